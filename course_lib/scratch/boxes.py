"""Box maths of a two-stage detector, written out: IoU, greedy NMS, and the delta encoding of boxes.

Boxes are ``(x1, y1, x2, y2)`` float tensors. Each function here gives the same result as the
torchvision function it teaches (``torchvision.ops.box_iou``, ``torchvision.ops.nms``,
``torchvision.models.detection._utils.BoxCoder``); the tests check that.

Delta encoding. A box is predicted as an offset from a reference box (an anchor, or a proposal) of
width ``w_a``, height ``h_a`` and centre ``(x_a, y_a)``::

    dx = wx * (x - x_a) / w_a      dy = wy * (y - y_a) / h_a
    dw = ww * log(w / w_a)         dh = wh * log(h / h_a)

The RPN uses weights ``(1, 1, 1, 1)``; the box head uses ``(10, 10, 5, 5)``, which scales the
targets up to unit-ish variance. Decoding inverts this on the *centre*, clamps ``dw, dh`` at
``log(1000 / 16)`` so ``exp`` cannot blow up, and multiplies widths (it never adds pixels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

#: The clamp on dw, dh before exp(): a box can grow at most 1000/16 = 62.5 times per decoding.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)
RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
BOX_HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _check_boxes(boxes: Tensor, name: str) -> None:
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must be a Tensor[N, 4] of (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")


def box_area(boxes: Tensor) -> Tensor:
    """``Tensor[N, 4] -> Tensor[N]``: ``(x2 - x1) * (y2 - y1)``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair: ``Tensor[N, 4], Tensor[M, 4] -> Tensor[N, M]``."""
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)  # no overlap -> zero, not a negative area
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter
    return inter / union


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression: ``Tensor[N, 4], Tensor[N] -> Tensor[K]`` kept indices, best first.

    Visit boxes from the highest score down (a stable sort, so ties keep input order, as
    torchvision does); keep a box unless it overlaps an already kept box by IoU > ``iou_threshold``.
    """
    _check_boxes(boxes, "boxes")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must be a Tensor[N] with N = {boxes.shape[0]}, got shape {tuple(scores.shape)}")
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = box_iou(boxes, boxes)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


def encode(reference_boxes: Tensor, proposals: Tensor, weights: Sequence[float] = RPN_WEIGHTS) -> Tensor:
    """The regression target that moves each proposal onto its reference box: ``Tensor[N, 4]`` (dx, dy, dw, dh).

    ``reference_boxes`` are the targets (ground truth), ``proposals`` the boxes being refined
    (anchors or RoIs); both ``Tensor[N, 4]``. Same as ``BoxCoder(weights).encode_single``.
    """
    _check_boxes(reference_boxes, "reference_boxes")
    _check_boxes(proposals, "proposals")
    wx, wy, ww, wh = torch.as_tensor(weights, dtype=reference_boxes.dtype)
    p_w, p_h = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
    p_x, p_y = proposals[:, 0] + 0.5 * p_w, proposals[:, 1] + 0.5 * p_h
    g_w, g_h = reference_boxes[:, 2] - reference_boxes[:, 0], reference_boxes[:, 3] - reference_boxes[:, 1]
    g_x, g_y = reference_boxes[:, 0] + 0.5 * g_w, reference_boxes[:, 1] + 0.5 * g_h
    return torch.stack(
        [wx * (g_x - p_x) / p_w, wy * (g_y - p_y) / p_h, ww * torch.log(g_w / p_w), wh * torch.log(g_h / p_h)],
        dim=1,
    )


def decode(deltas: Tensor, boxes: Tensor, weights: Sequence[float] = RPN_WEIGHTS) -> Tensor:
    """Apply ``deltas`` to ``boxes``: ``Tensor[N, 4K], Tensor[N, 4] -> Tensor[N, 4K]``.

    ``K`` is 1 for the RPN and the number of classes for the box head (one box per class). Same
    as ``BoxCoder(weights).decode_single``, including the clamp of dw, dh at ``BBOX_XFORM_CLIP``.
    """
    _check_boxes(boxes, "boxes")
    if deltas.ndim != 2 or deltas.shape[1] % 4 != 0 or len(deltas) != len(boxes):
        raise ValueError(f"deltas must be Tensor[N, 4K] with N = {len(boxes)}, got shape {tuple(deltas.shape)}")
    boxes = boxes.to(deltas.dtype)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ctr_x, ctr_y = boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=BBOX_XFORM_CLIP)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=BBOX_XFORM_CLIP)
    pred_ctr_x, pred_ctr_y = dx * widths[:, None] + ctr_x[:, None], dy * heights[:, None] + ctr_y[:, None]
    half_w, half_h = 0.5 * (torch.exp(dw) * widths[:, None]), 0.5 * (torch.exp(dh) * heights[:, None])
    corners = [pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h]
    return torch.stack(corners, dim=2).flatten(1)


def decode_simple(deltas: Tensor, boxes: Tensor) -> Tensor:
    """The simplified decoding often written in tutorials: shift the corner, scale the size.

    ``x = x_a + w_a * dx``, ``y = y_a + h_a * dy`` on the *top-left corner*, ``w = w_a * exp(dw)``,
    no weights, no clamp. ``Tensor[N, 4], Tensor[N, 4] -> Tensor[N, 4]`` (x1, y1, x2, y2). It differs
    from :func:`decode` whenever dw or dh != 0 (the box grows from its corner instead of its
    centre), whenever the weights are not 1, and for large dw, dh (no clamp).
    """
    _check_boxes(boxes, "boxes")
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    x1 = boxes[:, 0] + widths * deltas[:, 0]
    y1 = boxes[:, 1] + heights * deltas[:, 1]
    return torch.stack([x1, y1, x1 + widths * torch.exp(deltas[:, 2]), y1 + heights * torch.exp(deltas[:, 3])], dim=1)
