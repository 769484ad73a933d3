"""The mask head's training target: the ground-truth mask seen through a RoI, as an ``M x M`` grid.

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
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection import roi_heads as torchvision_roi_heads
from torchvision.models.detection.roi_heads import RoIHeads, project_masks_on_boxes


def project_masks_binary(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, resolution: int) -> Tensor:
    """torchvision's soft target thresholded at 0.5: ``Tensor[P, M, M]`` of 0 and 1 (in ``boxes``' dtype).

    ``gt_masks``: ``Tensor[N, H, W]`` of one image; ``boxes``: ``Tensor[P, 4]`` positive RoIs;
    ``matched_idxs``: ``Tensor[P]``, the ground-truth index of each RoI.
    """
    return (project_masks_on_boxes(gt_masks, boxes, matched_idxs, resolution) >= 0.5).to(boxes.dtype)


class BinaryMaskTargetRoIHeads(RoIHeads):
    """torchvision's ``RoIHeads`` trained on :func:`project_masks_binary` targets; inference unchanged."""

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        # torchvision's maskrcnn_loss looks project_masks_on_boxes up in its module when called:
        # point it at the binary version for this call only (restored even if the step fails).
        torchvision_roi_heads.project_masks_on_boxes = project_masks_binary
        try:
            return super().forward(features, proposals, image_shapes, targets)
        finally:
            torchvision_roi_heads.project_masks_on_boxes = project_masks_on_boxes


MASK_TARGETS = {"binary": BinaryMaskTargetRoIHeads, "soft": RoIHeads}


def set_mask_targets(model: nn.Module, kind: str = "binary") -> nn.Module:
    """Train a torchvision Mask R-CNN on ``"binary"`` (paper, detectron2) or ``"soft"`` (torchvision)
    mask targets; in place, every other setting and weight kept."""
    if kind not in MASK_TARGETS:
        raise ValueError(f"mask targets must be one of {', '.join(MASK_TARGETS)}, got {kind!r}")
    model.roi_heads.__class__ = MASK_TARGETS[kind]
    return model


@torch.no_grad()
def mean_soft_target(target: dict[str, Tensor], resolution: int = 28) -> Tensor:
    """Per instance of ``target``: the mean soft target over the cells its binary target marks as
    object, ``Tensor[N]``. Close to 1 for a solid object; for a thin one well below, so a head that
    learns the soft target and blurs it a little ends below the 0.5 threshold."""
    masks, boxes = torch.as_tensor(target["masks"]), torch.as_tensor(target["boxes"]).float()
    soft = project_masks_on_boxes(masks, boxes, torch.arange(len(boxes)), resolution)
    on = soft >= 0.5
    return ((soft * on).flatten(1).sum(1) / on.flatten(1).sum(1).clamp(min=1)).float()
