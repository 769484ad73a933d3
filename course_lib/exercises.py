"""Checkers for the Week 1 exercises: run the learner's function on generated cases against the reference.

Each ``check_*`` prints one ``✓`` line when every case agrees, and otherwise raises an
``AssertionError`` that names the input, the expected and the obtained value, and a hint aimed at
the most common mistake for that exercise (recognised by comparing with a typical wrong answer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torchvision
from torch import Tensor

from course_lib.anchors import anchor_at
from course_lib.roi import bilinear_sample


def _fail(exercise: str, inputs: str, expected: Any, got: Any, hint: str) -> AssertionError:
    return AssertionError(f"{exercise}: wrong result for {inputs}\n  expected: {expected}\n  got:      {got}\n  hint: {hint}")


def _as_floats(value: Any) -> list[float]:
    return [float(v) for v in (value.tolist() if isinstance(value, Tensor) else value)]


# --- anchors -----------------------------------------------------------------------------------


def check_anchor(fn: Callable[[tuple[int, int], int, float, float], Sequence[float]]) -> None:
    """``fn(position=(p_x, p_y), stride, size, aspect_ratio) -> (x1, y1, x2, y2)`` in torchvision's convention.

    The half sizes may be rounded or not (torchvision rounds them): a tolerance of 0.5 px covers both.
    """
    cases = [((20, 15), 16, 256, 2.0), ((0, 0), 4, 32, 0.5), ((7, 3), 8, 64, 1.0), ((5, 9), 32, 128, 0.5), ((12, 2), 64, 512, 2.0)]
    for position, stride, size, ratio in cases:
        expected = anchor_at(position, stride, size, ratio)
        got = torch.tensor(_as_floats(fn(position, stride, size, ratio)))
        if got.shape == (4,) and (got - expected).abs().max() <= 0.5 + 1e-4:
            continue
        cx, cy = position[0] * stride, position[1] * stride
        w, h = (expected[2:] - expected[:2]).tolist()
        if got.shape != (4,):
            hint = "return four numbers (x1, y1, x2, y2)"
        elif torch.allclose(got, torch.tensor([cx - size / 2, cy - size * ratio / 2, cx + size / 2, cy + size * ratio / 2])):
            hint = "the size fixes the AREA (size**2) and ratio = h / w, so w = size / sqrt(ratio), h = size * sqrt(ratio)"
        elif torch.allclose(got, torch.tensor([cx - h / 2, cy - w / 2, cx + h / 2, cy + w / 2]), atol=0.5 + 1e-4):
            hint = "width and height are swapped: torchvision's aspect ratio is height / width"
        elif torch.allclose(got - expected, torch.tensor([stride / 2] * 4), atol=0.5 + 1e-4):
            hint = "the centre of position (p_x, p_y) is (p_x * stride, p_y * stride), not the middle of the stride cell"
        else:
            hint = "centre = position * stride; w = size / sqrt(ratio), h = size * sqrt(ratio); corners = centre -/+ half size"
        raise _fail("anchor", f"position={position}, stride={stride}, size={size}, ratio={ratio}", expected.tolist(), got.tolist(), hint)
    print(f"✓ anchor: {len(cases)} anchors agree with torchvision's AnchorGenerator (within its 0.5 px rounding)")


# --- IoU ---------------------------------------------------------------------------------------


def check_iou(fn: Callable[[Sequence[float], Sequence[float]], float]) -> None:
    """``fn(box_a, box_b) -> float``, boxes as ``(x1, y1, x2, y2)`` lists."""
    g = torch.Generator().manual_seed(0)
    fixed = [
        ([0, 0, 10, 10], [5, 5, 15, 15]),  # partial overlap
        ([0, 0, 10, 10], [20, 20, 30, 30]),  # disjoint in both directions
        ([0, 0, 10, 10], [12, 0, 20, 10]),  # disjoint in x only
        ([0, 0, 10, 10], [2, 2, 5, 5]),  # one inside the other
        ([0, 0, 10, 10], [0, 0, 10, 10]),  # identical
        ([0, 0, 10, 10], [10, 0, 20, 10]),  # touching edges
    ]
    xy = torch.rand(20, 2, generator=g) * 50
    random = torch.cat([xy, xy + torch.rand(20, 2, generator=g) * 40 + 1], dim=1).view(10, 2, 4).tolist()
    cases = [(list(map(float, a)), list(map(float, b))) for a, b in fixed] + [(a, b) for a, b in random]
    for a, b in cases:
        ta, tb = torch.tensor([a]), torch.tensor([b])
        expected = torchvision.ops.box_iou(ta, tb).item()
        got = float(fn(a, b))
        if math.isclose(got, expected, abs_tol=1e-5):
            continue
        inter = (torch.min(ta[:, 2:], tb[:, 2:]) - torch.max(ta[:, :2], tb[:, :2])).clamp(min=0).prod().item()
        area_sum = torchvision.ops.box_area(ta).item() + torchvision.ops.box_area(tb).item()
        if expected == 0.0:
            hint = "when the boxes do not overlap, clamp the intersection width and height at 0 (two negatives multiply to a positive)"
        elif math.isclose(got, inter / area_sum, abs_tol=1e-5):
            hint = "the union is area_a + area_b - intersection: the overlap was counted twice"
        elif math.isclose(got, inter, abs_tol=1e-5):
            hint = "divide the intersection by the union"
        else:
            hint = "intersection = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1)); IoU = inter / (area_a + area_b - inter)"
        raise _fail("IoU", f"box_a={a}, box_b={b}", round(expected, 6), got, hint)
    print(f"✓ IoU: {len(cases)} box pairs agree with torchvision.ops.box_iou")


# --- NMS ---------------------------------------------------------------------------------------


def _nms_in_input_order(boxes: Tensor, iou_threshold: float) -> list[int]:
    """The typical mistake: greedy suppression that visits boxes in input order instead of by score."""
    iou = torchvision.ops.box_iou(boxes, boxes)
    keep: list[int] = []
    for i in range(len(boxes)):
        if all(iou[i, j] <= iou_threshold for j in keep):
            keep.append(i)
    return keep


def check_nms(fn: Callable[[Tensor, Tensor, float], Sequence[int]]) -> None:
    """``fn(boxes: Tensor[N, 4], scores: Tensor[N], iou_threshold) -> kept indices``, highest score first."""
    g = torch.Generator().manual_seed(1)
    cases = [(torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]]), torch.tensor([0.6, 0.9, 0.5]), 0.5)]
    for n, threshold in [(8, 0.5), (30, 0.3), (60, 0.7), (100, 0.5)]:
        xy = torch.rand(n, 2, generator=g) * 60
        boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 30 + 5], dim=1)
        cases.append((boxes, torch.rand(n, generator=g), threshold))
    for boxes, scores, threshold in cases:
        expected = torchvision.ops.nms(boxes, scores, threshold).tolist()
        got = [int(i) for i in fn(boxes.clone(), scores.clone(), threshold)]
        if got == expected:
            continue
        if sorted(got) == sorted(expected):
            hint = "the right boxes, in the wrong order: return the kept indices from highest to lowest score"
        elif got == _nms_in_input_order(boxes, threshold):
            hint = "visit the boxes by decreasing score (argsort of the scores), not in input order"
        elif len(got) < len(expected):
            hint = "suppress only boxes whose IoU with a KEPT box is > the threshold (not >=, not any box)"
        else:
            hint = "after keeping a box, remove every remaining box with IoU > threshold against it"
        raise _fail("NMS", f"{len(boxes)} boxes, iou_threshold={threshold}", expected, got, hint)
    print(f"✓ NMS: {len(cases)} cases keep exactly the indices of torchvision.ops.nms")


# --- bilinear sampling -------------------------------------------------------------------------


def check_bilinear(fn: Callable[[Tensor, float, float], float]) -> None:
    """``fn(feature_map: Tensor[H, W], y, x) -> float`` for a point inside the map."""
    g = torch.Generator().manual_seed(2)
    feature_map = torch.randn(6, 8, generator=g)
    points = [(2.0, 3.0), (2.5, 3.5), (0.25, 6.75), (4.7, 1.2), (1.0, 6.5)]
    points += [tuple(p) for p in (torch.rand(6, 2, generator=g) * torch.tensor([5.0, 7.0])).tolist()]
    for y, x in points:
        expected = bilinear_sample(feature_map[None], torch.tensor(y), torch.tensor(x)).item()
        got = float(fn(feature_map.clone(), y, x))
        if math.isclose(got, expected, abs_tol=1e-5):
            continue
        if math.isclose(got, feature_map[round(y), round(x)].item(), abs_tol=1e-6) or math.isclose(got, feature_map[int(y), int(x)].item(), abs_tol=1e-6):
            hint = "that is one cell's value (rounding, as RoI Pool does): mix the 4 neighbours with weights from the fractional parts"
        elif math.isclose(got, bilinear_sample(feature_map[None], torch.tensor(x), torch.tensor(y)).item(), abs_tol=1e-5):
            hint = "x and y are swapped: feature_map[row, column] is feature_map[y, x]"
        else:
            hint = "with y0 = floor(y), x0 = floor(x), ly = y - y0, lx = x - x0: (1-ly)(1-lx) f[y0,x0] + (1-ly) lx f[y0,x0+1] + ly (1-lx) f[y0+1,x0] + ly lx f[y0+1,x0+1]"
        raise _fail("bilinear sample", f"(y, x) = ({y:.3f}, {x:.3f}) on a {tuple(feature_map.shape)} map", round(expected, 6), got, hint)
    print(f"✓ bilinear sample: {len(points)} points agree with the RoI Align interpolation")
