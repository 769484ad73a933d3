"""Open up a torchvision Mask R-CNN: run it one submodule at a time and keep every intermediate.

``model([image])`` hides the interesting tensors: the ~10^5 anchors and their objectness, the
proposals before and after NMS, the class probabilities of *every* proposal and the masks of
*every* class. :func:`trace` calls the same submodules in the same order as
``GeneralizedRCNN.forward`` (eval mode)::

    transform -> backbone (+FPN) -> rpn.head, rpn.anchor_generator -> box_coder.decode
    -> rpn.filter_proposals -> box_roi_pool, box_head, box_predictor -> postprocess_detections
    -> mask_roi_pool, mask_head, mask_predictor -> maskrcnn_inference -> transform.postprocess

so its final detections are *exactly* the model's own output (a test checks ``torch.equal``).
Everything before ``transform.postprocess`` is in the coordinates of the resized image
(``Trace.image_size``); ``Trace.final`` is in the original image's coordinates.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.roi_heads import maskrcnn_inference
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import boxes as box_ops

from course_lib.modeling.coco_heads import CocoUrbanMaskLogits
from course_lib.modeling.mask_skip import fpn_levels
from course_lib.scratch.anchors import feature_strides


@dataclass
class Trace:
    """Every intermediate of one image through Mask R-CNN. ``A`` anchors, ``R`` proposals, ``C`` classes, ``D`` detections."""

    original_size: tuple[int, int]  # (H, W) of the input image
    image_size: tuple[int, int]  # (h, w) after the transform's resize, before padding
    batch: Tensor  # [1, 3, Hp, Wp] normalised, resized, padded to a multiple of 32
    features: OrderedDict[str, Tensor]  # FPN level name -> [1, channels, h_l, w_l]
    anchors: list[Tensor]  # per level [h_l * w_l * a, 4], (x1, y1, x2, y2) in resized-image pixels
    strides: list[tuple[int, int]]  # per level (stride_y, stride_x) used for the anchors
    objectness: Tensor  # [A] RPN logits, levels concatenated in the order of `anchors`
    rpn_deltas: Tensor  # [A, 4] RPN (dx, dy, dw, dh), weights (1, 1, 1, 1)
    anchor_levels: Tensor  # [A] index of the FPN level of each anchor
    decoded: Tensor  # [A, 4] every anchor moved by its deltas (before any filtering)
    pre_nms_boxes: Tensor  # [P, 4] the per-level top-k candidates that NMS sees (clipped, filtered)
    pre_nms_scores: Tensor  # [P] their sigmoid objectness
    pre_nms_levels: Tensor  # [P] their FPN level
    proposals: Tensor  # [R, 4] after per-level NMS and the post-NMS top-k (~1000)
    proposal_scores: Tensor  # [R] sigmoid objectness of the proposals
    class_logits: Tensor  # [R, C] box head classification logits for every proposal
    class_probs: Tensor  # [R, C] softmax of the logits (column 0 is background)
    box_deltas: Tensor  # [R, 4C] box head deltas, one box per class, weights (10, 10, 5, 5)
    class_boxes: Tensor  # [R, C, 4] decoded per-class boxes (not clipped)
    boxes: Tensor  # [D, 4] detections in resized-image pixels
    labels: Tensor  # [D]
    scores: Tensor  # [D]
    detection_proposal: Tensor  # [D] index of the proposal each detection came from
    mask_logits: Tensor  # [D, C, 28, 28] logits of the masks of EVERY class for each detection
    mask_probs: Tensor  # [D, 1, 28, 28] sigmoid of the predicted class's mask (what inference keeps)
    final: dict[str, Tensor]  # boxes, labels, scores, masks [D, 1, H, W] in original-image pixels


def _pre_nms_candidates(
    model: MaskRCNN, decoded: Tensor, objectness: Tensor, levels: Tensor, num_per_level: list[int], image_size: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor]:
    """The first half of ``rpn.filter_proposals``: per-level top-k, clip, drop tiny and low boxes."""
    rpn = model.rpn
    top_n = rpn._get_top_n_idx(objectness[None], num_per_level)[0]  # per level, not a global score cut
    boxes = box_ops.clip_boxes_to_image(decoded[top_n], image_size)
    scores, levels = torch.sigmoid(objectness[top_n]), levels[top_n]
    keep = box_ops.remove_small_boxes(boxes, rpn.min_size)
    keep = keep[scores[keep] >= rpn.score_thresh]
    return boxes[keep], scores[keep], levels[keep]


def _detection_sources(class_boxes: Tensor, class_probs: Tensor, image_size: tuple[int, int], boxes: Tensor, labels: Tensor, scores: Tensor) -> Tensor:
    """For each detection, the proposal whose (clipped box, score) for that class it is."""
    clipped = box_ops.clip_boxes_to_image(class_boxes, image_size)  # [R, C, 4]
    sources = []
    for box, label, score in zip(boxes, labels, scores):
        match = (clipped[:, label] == box).all(dim=1) & (class_probs[:, label] == score)
        sources.append(int(match.nonzero()[0, 0]))
    return torch.tensor(sources, dtype=torch.int64)


@torch.no_grad()
def trace(model: MaskRCNN, image: Tensor) -> Trace:
    """Run ``model`` (a torchvision ``MaskRCNN`` in eval mode) on one ``image`` ``Tensor[3, H, W]`` in [0, 1]."""
    if model.training:
        raise ValueError("trace() follows the inference path: call model.eval() first")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be a Tensor[3, H, W] with values in [0, 1], got shape {tuple(image.shape)}")
    original_size = (int(image.shape[-2]), int(image.shape[-1]))
    images, _ = model.transform([image])
    image_size = images.image_sizes[0]

    all_features = model.backbone(images.tensors)
    if isinstance(all_features, Tensor):
        all_features = OrderedDict([("0", all_features)])
    features = fpn_levels(all_features)  # what the RPN and box head read (a mask head may also read the stem)
    feature_list = list(features.values())

    rpn = model.rpn
    objectness_maps, delta_maps = rpn.head(feature_list)
    anchors = rpn.anchor_generator(images, feature_list)[0]
    num_per_level = [o[0].numel() for o in objectness_maps]  # a * h_l * w_l per level
    objectness, rpn_deltas = concat_box_prediction_layers(objectness_maps, delta_maps)
    decoded = rpn.box_coder.decode(rpn_deltas, [anchors]).view(-1, 4)
    objectness = objectness.flatten()
    levels = torch.cat([torch.full((n,), i, dtype=torch.int64) for i, n in enumerate(num_per_level)])
    pre_boxes, pre_scores, pre_levels = _pre_nms_candidates(model, decoded, objectness, levels, num_per_level, image_size)
    proposals, proposal_scores = rpn.filter_proposals(decoded[None], objectness[None], images.image_sizes, num_per_level)

    heads = model.roi_heads
    box_features = heads.box_head(heads.box_roi_pool(features, proposals, images.image_sizes))
    class_logits, box_deltas = heads.box_predictor(box_features)
    (boxes,), (scores,), (labels,) = heads.postprocess_detections(class_logits, box_deltas, proposals, images.image_sizes)
    class_probs = F.softmax(class_logits, -1)
    class_boxes = heads.box_coder.decode(box_deltas, proposals)

    mask_features = heads.mask_head(heads.mask_roi_pool(all_features, [boxes], images.image_sizes))
    mask_logits = heads.mask_predictor(mask_features)
    (mask_probs,) = maskrcnn_inference(mask_logits, [labels])

    detection = {"boxes": boxes, "labels": labels, "scores": scores, "masks": mask_probs}
    (final,) = model.transform.postprocess([dict(detection)], images.image_sizes, [original_size])

    return Trace(
        original_size=original_size,
        image_size=(int(image_size[0]), int(image_size[1])),
        batch=images.tensors,
        features=features,
        anchors=list(anchors.split(num_per_level)),
        strides=feature_strides(images.tensors.shape[-2:], [f.shape[-2:] for f in feature_list]),
        objectness=objectness,
        rpn_deltas=rpn_deltas,
        anchor_levels=levels,
        decoded=decoded,
        pre_nms_boxes=pre_boxes,
        pre_nms_scores=pre_scores,
        pre_nms_levels=pre_levels,
        proposals=proposals[0],
        proposal_scores=proposal_scores[0],
        class_logits=class_logits,
        class_probs=class_probs,
        box_deltas=box_deltas,
        class_boxes=class_boxes,
        boxes=boxes,
        labels=labels,
        scores=scores,
        detection_proposal=_detection_sources(class_boxes, class_probs, image_size, boxes, labels, scores),
        mask_logits=mask_logits,
        mask_probs=mask_probs,
        final=final,
    )


@torch.no_grad()
def coco_mask_logits(model: MaskRCNN, t: Trace) -> Tensor:
    """``Tensor[D, 91, 28, 28]``: the mask logits of every COCO slot for each detection of ``t``.

    ``model`` is COCO's model read in the course's classes (:func:`course_lib.modeling.coco_heads.coco_zero_shot`),
    whose mask head computes all 91 maps and keeps 9 (``t.mask_logits`` is this tensor's rows
    ``model.roi_heads.mask_predictor.mask_fcn_logits.rows``).
    """
    heads = model.roi_heads
    logits_layer = heads.mask_predictor.mask_fcn_logits
    if not isinstance(logits_layer, CocoUrbanMaskLogits):
        raise ValueError("coco_mask_logits needs COCO weights: zoo.load('coco', urban=True)")
    features = heads.mask_head(heads.mask_roi_pool(t.features, [t.boxes], [t.image_size]))
    for name, layer in heads.mask_predictor.named_children():  # conv5_mask, relu; then COCO's 91-map conv
        features = logits_layer.coco(features) if name == "mask_fcn_logits" else layer(features)
    return features


def gradient_receptive_field(backbone: torch.nn.Module, batch: Tensor, level: str, position: tuple[int, int]) -> Tensor:
    """Which input pixels influence one feature position: ``|d sum_c F[level][0, c, p_y, p_x] / d input|``.

    ``batch`` is ``Tensor[1, 3, H, W]`` as the backbone sees it (e.g. ``Trace.batch``); ``position`` is
    ``(p_x, p_y)``. Returns ``Tensor[H, W]`` summed over colour channels. Its non-zero support is the
    theoretical receptive field; where the mass concentrates is the (much smaller) effective one.
    """
    batch = batch.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        features = backbone(batch)
        p_x, p_y = position
        features[level][0, :, p_y, p_x].sum().backward()
    return batch.grad[0].abs().sum(0)


