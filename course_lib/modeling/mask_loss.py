"""The mask head's training target (the ground-truth mask seen through a RoI, an ``M x M`` grid) and loss.

For each positive RoI, Mask R-CNN crops the matched ground-truth mask to the RoI and resizes it to
the head's ``M x M`` grid (28 x 28); the loss is the per-cell binary cross-entropy on the
ground-truth class's channel only. Implementations differ in how that grid is filled:

* torchvision (``roi_heads.project_masks_on_boxes``) runs RoI Align over the 0/1 mask, which
  gives a *soft* target: each cell holds the interpolated coverage of its sample points.
* The paper's target is an "m x m binary mask", and Detectron and detectron2 build it binary
  (detectron2's ``BitMasks.crop_and_resize``: RoI Align, then ``>= 0.5``).

At test time each predicted probability is thresholded at 0.5. A thin structure (the 1-pixel
tyre of a bicycle in a 30-pixel box) covers each cell only in part, so most of its soft targets
sit below 0.5: trained on them, the head learns to predict "rather background" exactly where the
structure is, and the thresholded mask loses it. A binary target trains the head on the decision
it is judged by. Inference is the same either way; only training changes.

The same per-cell average also makes a thin object a small part of the loss: its few foreground
cells are outnumbered by background ones. :func:`dice_loss`, which many later instance
segmenters use, scores each object's overlap as a whole; :func:`mask_loss` can add it.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss, project_masks_on_boxes


def project_masks_binary(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, resolution: int) -> Tensor:
    """torchvision's soft target thresholded at 0.5: ``Tensor[P, M, M]`` of 0 and 1 (in ``boxes``' dtype).

    ``gt_masks``: ``Tensor[N, H, W]`` of one image; ``boxes``: ``Tensor[P, 4]`` positive RoIs;
    ``matched_idxs``: ``Tensor[P]``, the ground-truth index of each RoI.
    """
    return (project_masks_on_boxes(gt_masks, boxes, matched_idxs, resolution) >= 0.5).to(boxes.dtype)


def dice_loss(logits: Tensor, targets: Tensor, smooth: float = 1.0) -> Tensor:
    """``1 - Dice(sigmoid(logits), targets)`` per RoI, averaged: ``Tensor[P, M, M]`` twice -> scalar.

    ``Dice = (2 |p t| + smooth) / (|p| + |t| + smooth)`` with sums over one RoI's cells (V-Net,
    Milletari et al. 2016; the mask loss of SOLO, CondInst and Mask2Former). Each object counts
    once whatever its area: a 1-pixel ring with 40 foreground cells weighs as much as a car with 600,
    where the per-cell cross-entropy averages them into the 784 cells of every RoI.
    """
    probs, targets = logits.float().sigmoid().flatten(1), targets.float().flatten(1)
    dice = (2 * (probs * targets).sum(1) + smooth) / (probs.sum(1) + targets.sum(1) + smooth)
    return (1 - dice).mean()


def mask_loss(mask_logits: Tensor, proposals: list[Tensor], gt_masks: list[Tensor], gt_labels: list[Tensor],
              mask_matched_idxs: list[Tensor], *, project: Callable = project_masks_on_boxes,
              dice_weight: float = 0.0) -> Tensor:
    """torchvision's ``roi_heads.maskrcnn_loss`` with a choice of target and an optional dice term.

    ``mask_logits``: ``Tensor[P, K, M, M]`` for the P positive RoIs (``proposals``, one ``Tensor[P_i, 4]``
    per image, matched to ``gt_masks[i][mask_matched_idxs[i]]``). Only the ground-truth class's
    channel is trained: ``BCE(logits[p, label_p], target_p)`` averaged over every cell, plus
    ``dice_weight`` x :func:`dice_loss` on the same channel. ``project`` builds the ``M x M`` targets
    (torchvision's soft :func:`project_masks_on_boxes` or :func:`project_masks_binary`).
    """
    resolution = mask_logits.shape[-1]
    labels = torch.cat([gt_label[idxs] for gt_label, idxs in zip(gt_labels, mask_matched_idxs)])
    targets = torch.cat([project(m, p, i, resolution) for m, p, i in zip(gt_masks, proposals, mask_matched_idxs)])
    if targets.numel() == 0:
        return mask_logits.sum() * 0
    logits = mask_logits[torch.arange(len(labels), device=labels.device), labels]
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    return loss + dice_weight * dice_loss(logits, targets) if dice_weight else loss


#: The ``mask_targets`` choices of :func:`course_lib.modeling.maskrcnn.build`.
PROJECTIONS = {"binary": project_masks_binary, "soft": project_masks_on_boxes}


class MaskLossRoIHeads(RoIHeads):
    """torchvision's ``RoIHeads`` trained with :func:`mask_loss`: a choice of mask target
    (``mask_targets``: ``"binary"`` as in the paper and detectron2, or torchvision's ``"soft"``)
    and ``dice_weight`` x :func:`dice_loss` added. Inference is torchvision's, unchanged.

    Build it with :meth:`like` from the ``RoIHeads`` a ``MaskRCNN`` made (same submodules and
    settings), or through ``course_lib.modeling.maskrcnn.build(..., mask_targets=..., mask_dice_weight=...)``.
    """

    def __init__(self, *args: Any, mask_targets: str = "binary", dice_weight: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if mask_targets not in PROJECTIONS:
            raise ValueError(f"mask targets must be one of {', '.join(PROJECTIONS)}, got {mask_targets!r}")
        if dice_weight < 0:
            raise ValueError(f"the dice weight must be >= 0, got {dice_weight}")
        self.mask_targets, self.dice_weight = mask_targets, dice_weight

    @classmethod
    def like(cls, heads: RoIHeads, mask_targets: str = "binary", dice_weight: float = 0.0) -> "MaskLossRoIHeads":
        """A ``MaskLossRoIHeads`` holding ``heads``' own pooler, head and predictor modules, with its settings."""
        if heads.has_keypoint():
            raise ValueError("MaskLossRoIHeads is for Mask R-CNN; these heads also predict keypoints")
        return cls(
            heads.box_roi_pool, heads.box_head, heads.box_predictor,
            heads.proposal_matcher.high_threshold, heads.proposal_matcher.low_threshold,
            heads.fg_bg_sampler.batch_size_per_image, heads.fg_bg_sampler.positive_fraction,
            heads.box_coder.weights, heads.score_thresh, heads.nms_thresh, heads.detections_per_img,
            heads.mask_roi_pool, heads.mask_head, heads.mask_predictor,
            mask_targets=mask_targets, dice_weight=dice_weight,
        )

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None:
            raise ValueError("training needs targets")
        # torchvision's training forward (box part, then the mask head on the positive RoIs), with this loss.
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        positives = [torch.where(image_labels > 0)[0] for image_labels in labels]
        mask_proposals = [boxes[k] for boxes, k in zip(proposals, positives)]
        pos_matched_idxs = [idxs[k] for idxs, k in zip(matched_idxs, positives)]
        mask_logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes)))
        loss_mask = mask_loss(mask_logits, mask_proposals, [t["masks"] for t in targets], [t["labels"] for t in targets],
                              pos_matched_idxs, project=PROJECTIONS[self.mask_targets], dice_weight=self.dice_weight)
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg, "loss_mask": loss_mask}


@torch.no_grad()
def mean_soft_target(target: dict[str, Tensor], resolution: int = 28) -> Tensor:
    """Per instance of ``target``: the mean soft target over the cells its binary target marks as
    object, ``Tensor[N]``. Close to 1 for a solid object; for a thin one well below, so a head that
    learns the soft target and blurs it a little ends below the 0.5 threshold."""
    masks, boxes = torch.as_tensor(target["masks"]), torch.as_tensor(target["boxes"]).float()
    soft = project_masks_on_boxes(masks, boxes, torch.arange(len(boxes)), resolution)
    on = soft >= 0.5
    return ((soft * on).flatten(1).sum(1) / on.flatten(1).sum(1).clamp(min=1)).float()
