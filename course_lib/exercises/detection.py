"""Exercises of Week 1's detection chapters: IoU and NMS (chapter 3), one bilinear sample and the FPN level (chapter 4)."""

from __future__ import annotations

import math

import torch
import torchvision
from torchvision.ops.poolers import LevelMapper

from course_lib.exercises.core import Exercise, Mistake, register
from course_lib.exercises.generate import distinct_scores, random_boxes, seeded

# --- IoU -------------------------------------------------------------------------------------------


def iou(box_a, box_b):
    """IoU of two (x1, y1, x2, y2) boxes."""
    inter_w = max(0.0, min(box_a[2], box_b[2]) - max(box_a[0], box_b[0]))
    inter_h = max(0.0, min(box_a[3], box_b[3]) - max(box_a[1], box_b[1]))
    inter = inter_w * inter_h
    area_a = (box_a[2] - box_a[0]) * (box_a[3] - box_a[1])
    area_b = (box_b[2] - box_b[0]) * (box_b[3] - box_b[1])
    return inter / (area_a + area_b - inter)


def _area(box, plus_one: bool = False):
    """A box's area; ``plus_one``: the old pixel-count convention, width = x2 - x1 + 1 (a mistake here)."""
    return (box[2] - box[0] + plus_one) * (box[3] - box[1] + plus_one)


def _overlap(a, b, clamp: bool = True, plus_one: bool = False):
    w, h = min(a[2], b[2]) - max(a[0], b[0]) + plus_one, min(a[3], b[3]) - max(a[1], b[1]) + plus_one
    return max(0.0, w) * max(0.0, h) if clamp else w * h


def _iou_cases():
    return [([0.0, 0, 10, 10], [5.0, 5, 15, 15]), ([0.0, 0, 10, 10], [20.0, 20, 30, 30]), ([0.0, 0, 10, 10], [12.0, 0, 20, 10]),
            ([0.0, 0, 10, 10], [2.0, 2, 5, 5]), ([0.0, 0, 10, 10], [0.0, 0, 10, 10]), ([0.0, 0, 10, 10], [10.0, 0, 20, 10])]


def _iou_generated():
    edges = [([0.0, 0, 10, 10], [0.0, 0, 10, 5]),  # IoU exactly 0.5
             ([0.0, 0, 1000, 1], [0.0, 0, 1, 1000]),  # extreme aspect ratios crossing
             ([0.0, 0, 0.01, 50], [0.0, 10, 0.01, 60]),  # very thin boxes
             ([3.0, 3, 3, 9], [0.0, 0, 10, 10]),  # a zero-width box inside another: IoU 0
             ([0.0, 0, 10, 10], [-5.0, -5, 0, 0]),  # touching at one corner
             ([0.0, 0, 10, 10], [10.0, 10, 20, 20]), ([-20.0, -10, -5, 5], [-10.0, -20, 5, -5])]  # negative coordinates
    g = seeded(0)
    random = [(a.tolist(), b.tolist()) for a, b in random_boxes(60, g, 50, 40, torch.float64).view(30, 2, 4)]
    return edges + random


register(Exercise(
    name="iou", chapter="book/week1/03_rpn_and_nms", title="IoU of two boxes", solution=iou, cases=_iou_cases, generated=_iou_generated,
    expected=lambda a, b: torchvision.ops.box_iou(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)).item(),
    agrees_with="torchvision.ops.box_iou",
    hint="intersection = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1)); IoU = inter / (area_a + area_b - inter)",
    mistakes=(
        Mistake(lambda a, b: _overlap(a, b, clamp=False) / (_area(a) + _area(b) - _overlap(a, b, clamp=False)),
                "when the boxes do not overlap, clamp the intersection width and height at 0 (two negatives multiply to a positive)"),
        Mistake(lambda a, b: _overlap(a, b) / (_area(a) + _area(b)), "the union is area_a + area_b - intersection: the overlap was counted twice"),
        Mistake(lambda a, b: _overlap(a, b), "divide the intersection by the union"),
        Mistake(lambda a, b: _overlap(a, b, plus_one=True) / (_area(a, True) + _area(b, True) - _overlap(a, b, plus_one=True)),
                "coordinates are continuous pixel edges: width = x2 - x1, not the old pixel-count convention x2 - x1 + 1"),
    ),
))


# --- NMS -------------------------------------------------------------------------------------------


def nms(boxes, scores, iou_threshold):
    """Indices of the boxes greedy NMS keeps, highest score first."""
    overlaps = torchvision.ops.box_iou(boxes, boxes)
    keep = []
    for i in scores.argsort(descending=True).tolist():
        # suppressed only by a KEPT box overlapping it by MORE than the threshold
        if all(overlaps[i, j] <= iou_threshold for j in keep):
            keep.append(i)
    return keep


def _nms_by(boxes, scores, order, suppresses):
    """Greedy NMS visiting ``order``, where ``suppresses(iou)`` says whether a kept box removes another."""
    removes = suppresses(torchvision.ops.box_iou(boxes, boxes))
    keep = []
    for i in order:
        if not removes[i, keep].any():
            keep.append(i)
    return keep


def _nms_by_every_higher(boxes, scores, iou_threshold):
    """Suppressing by every higher-scoring box, kept or not."""
    overlaps = torchvision.ops.box_iou(boxes, boxes) > iou_threshold
    higher = scores[None, :] > scores[:, None]  # [i, j]: box j outscores box i
    return [i for i in scores.argsort(descending=True).tolist() if not (overlaps[i] & higher[i]).any()]


def _nms_cases():
    g = seeded(1)
    cases = [(torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]]), torch.tensor([0.6, 0.9, 0.5]), 0.5)]
    return cases + [(random_boxes(n, g, 60, 30), distinct_scores(n, g), t) for n, t in [(8, 0.5), (30, 0.3)]]


def _nms_generated():
    f64 = torch.float64  # tie cases in float64: their IoU equals the Python threshold exactly
    edges = [
        (torch.zeros(0, 4), torch.zeros(0), 0.5),  # empty
        (torch.tensor([[2.0, 3, 7, 9]]), torch.tensor([0.4]), 0.5),  # a single box
        (torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5]], dtype=f64), torch.tensor([0.9, 0.8], dtype=f64), 0.5),  # IoU == threshold: kept
        (torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 3]], dtype=f64), torch.tensor([0.3, 0.8], dtype=f64), 0.3),
        (torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 7], [0, 0, 10, 6]], dtype=f64), torch.tensor([0.5, 0.7, 0.9], dtype=f64), 0.7),
        (torch.tensor([[0.0, 0, 10, 10]] * 3), torch.tensor([0.2, 0.9, 0.5]), 0.5),  # duplicates
        (torch.tensor([[0.0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]]), torch.tensor([0.9, 0.8, 0.7]), 0.3),  # a chain: 0 removes 1, 2 stays
        (torch.tensor([[0.0, 0, 1000, 2], [0, 0, 2, 1000], [0, 0, 1000, 1.5]]), torch.tensor([0.6, 0.5, 0.9]), 0.5),  # thin boxes
    ]
    g = seeded(11)
    random = [(random_boxes(n, g, 60, 30), distinct_scores(n, g), t) for n, t in [(60, 0.7), (100, 0.5), (5, 0.1), (40, 0.9)]]
    return edges + random


register(Exercise(
    name="nms", chapter="book/week1/03_rpn_and_nms", title="Write NMS", solution=nms, cases=_nms_cases, generated=_nms_generated,
    expected=lambda boxes, scores, t: torchvision.ops.nms(boxes, scores, t), agrees_with="torchvision.ops.nms",
    hint="visit boxes by decreasing score; keep one unless its IoU with an already KEPT box is > the threshold; no boxes -> []",
    mistakes=(
        Mistake(lambda b, s, t: sorted(nms(b, s, t)), "the right boxes, in the wrong order: return the kept indices from highest to lowest score"),
        Mistake(lambda b, s, t: _nms_by(b, s, range(len(b)), lambda v: v > t), "visit the boxes by decreasing score (argsort of the scores), not in input order"),
        Mistake(_nms_by_every_higher, "suppress a box only by boxes that were KEPT, not by every higher-scoring box"),
        Mistake(lambda b, s, t: _nms_by(b, s, s.argsort(descending=True).tolist(), lambda v: v >= t),
                "a box is suppressed only when its IoU is GREATER than the threshold: at exactly the threshold torchvision keeps it"),
        Mistake(lambda b, s, t: None if len(b) == 0 else nms(b, s, t), "no boxes in, no boxes kept: return an empty list, not None"),
    ),
))


# --- RoI Align's bilinear sample -------------------------------------------------------------------


def bilinear(feature_map, y, x):
    """Bilinear interpolation of a ``Tensor[H, W]`` at the point (y, x)."""
    y0, x0 = math.floor(y), math.floor(x)
    y1 = min(y0 + 1, feature_map.shape[0] - 1)
    x1 = min(x0 + 1, feature_map.shape[1] - 1)
    ly, lx = y - y0, x - x0
    return float((1 - ly) * (1 - lx) * feature_map[y0, x0]
                 + (1 - ly) * lx * feature_map[y0, x1]
                 + ly * (1 - lx) * feature_map[y1, x0]
                 + ly * lx * feature_map[y1, x1])


def _roi_align_at(feature_map, y, x):
    """torchvision's roi_align sampling one point: a 1 x 1 output of a 1-pixel box centred on (x, y), one sample."""
    box = torch.tensor([[0, x - 0.5, y - 0.5, x + 0.5, y + 0.5]], dtype=torch.float64)
    return torchvision.ops.roi_align(feature_map.double()[None, None], box, 1, spatial_scale=1.0, sampling_ratio=1, aligned=False).item()


def _bilinear_unclamped(f, y, x):
    """The bilinear sample without clamping the +1 neighbours (a mistake: it reads past the last row or column)."""
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0
    return float((1 - ly) * (1 - lx) * f[y0, x0] + (1 - ly) * lx * f[y0, x0 + 1] + ly * (1 - lx) * f[y0 + 1, x0] + ly * lx * f[y0 + 1, x0 + 1])


def _bilinear_cases():
    feature_map = torch.randn(6, 8, generator=seeded(2), dtype=torch.float64)
    return [(feature_map, y, x) for y, x in [(2.0, 3.0), (2.5, 3.5), (0.25, 6.75), (4.7, 1.2), (1.0, 6.5)]]


def _bilinear_generated():
    g = seeded(12)
    feature_map = torch.randn(6, 8, generator=g, dtype=torch.float64)
    edges = [(feature_map, y, x) for y, x in [(0.0, 0.0), (5.0, 7.0), (5.0, 2.5), (3.5, 7.0), (4.999, 6.999), (0.0, 7.0)]]  # corners, last row and column
    edges += [(torch.randn(1, 5, generator=g, dtype=torch.float64), 0.0, 2.25), (torch.randn(7, 1, generator=g, dtype=torch.float64), 3.75, 0.0)]  # one row, one column
    points = (torch.rand(20, 2, generator=g, dtype=torch.float64) * torch.tensor([5.0, 7.0], dtype=torch.float64)).tolist()
    return edges + [(feature_map, y, x) for y, x in points]


register(Exercise(
    name="bilinear", chapter="book/week1/04_roi_align", title="One bilinear sample", solution=bilinear, cases=_bilinear_cases, generated=_bilinear_generated,
    expected=_roi_align_at, agrees_with="torchvision.ops.roi_align sampling that one point",
    hint="with y0 = floor(y), x0 = floor(x), ly = y - y0, lx = x - x0: (1-ly)(1-lx) f[y0,x0] + (1-ly) lx f[y0,x0+1] + ly (1-lx) f[y0+1,x0] + ly lx f[y0+1,x0+1], the +1 neighbours clamped to the last row and column",
    mistakes=(
        Mistake(lambda f, y, x: float(f[round(y), round(x)]), "that is the nearest cell's value (rounding, as RoI Pool does): mix the four neighbours with weights from the fractional parts"),
        Mistake(lambda f, y, x: float(f[int(y), int(x)]), "that is one cell's value (truncating): mix the four neighbours with weights from the fractional parts"),
        Mistake(lambda f, y, x: bilinear(f.T, y, x), "x and y are swapped: feature_map[row, column] is feature_map[y, x]"),
        Mistake(lambda f, y, x: _bilinear_unclamped(f, y, x), "on the last row or column there is no +1 neighbour: clamp y0 + 1 and x0 + 1 to H - 1 and W - 1"),
    ),
))


# --- the FPN level of a box ------------------------------------------------------------------------


def fpn_level(box):
    """The level k of the FPN map P_k that RoI Align reads for a box."""
    scale = math.sqrt((box[2] - box[0]) * (box[3] - box[1]))
    level = math.floor(4 + math.log2(scale / 224) + 1e-6)
    return min(5, max(2, level))


def _level(box, scale, rounding=math.floor, clamp=True):
    level = rounding(4 + math.log2(scale(box) / 224) + 1e-6)
    return min(5, max(2, level)) if clamp else level


def _sqrt_area(box):
    return math.sqrt((box[2] - box[0]) * (box[3] - box[1]))


def _fpn_generated():
    edges = [[0.0, 0, 112, 112], [0.0, 0, 448, 448], [0.0, 0, 223.9, 224], [0.0, 0, 112, 448], [0.0, 0, 56, 56],  # exact level boundaries
             [0.0, 0, 20, 800], [0.0, 0, 800, 20], [0.0, 0, 4, 3000],  # a tall pedestrian, a wide tram, a pole
             [5.0, 5, 6, 6], [0.0, 0, 2000, 1500], [0.0, 0, 896, 896], [-50.0, -50, 62, 62]]
    g = seeded(13)
    sides = torch.exp(torch.rand(30, 2, generator=g, dtype=torch.float64) * math.log(1000)) + 1  # log-uniform in [2, 1001]
    return [(box,) for box in edges] + [([0.0, 0.0, w, h],) for w, h in sides.tolist()]


register(Exercise(
    name="fpn_level", chapter="book/week1/04_roi_align", title="The FPN level of a box", solution=fpn_level,
    cases=lambda: [([0.0, 0, 224, 224],), ([10.0, 10, 122, 122],), ([0.0, 0, 40, 20],), ([0.0, 0, 600, 500],), ([5.0, 5, 100, 300],), ([0.0, 0, 447, 447],), ([0.0, 0, 1000, 900],)],
    generated=_fpn_generated,
    expected=lambda box: int(LevelMapper(2, 5)([torch.tensor([box], dtype=torch.float64)])[0]) + 2, agrees_with="torchvision's LevelMapper (MultiScaleRoIAlign)",
    hint="k = floor(4 + log2(sqrt(w * h) / 224) + 1e-6), clamped to the pyramid's levels 2..5",
    mistakes=(
        Mistake(lambda box: _level(box, _sqrt_area, clamp=False), "clamp the level to the levels the pyramid has: P2 (k = 2) to P5 (k = 5)"),
        Mistake(lambda box: _level(box, _sqrt_area, rounding=round), "floor, not round: a box moves up a level only once its scale reaches 224 * 2**(k - 4)"),
        Mistake(lambda box: _level(box, lambda b: (b[2] - b[0]) * (b[3] - b[1]) / 224), "the scale is sqrt(w * h), a length, compared with 224 (not the area)"),
        Mistake(lambda box: _level(box, lambda b: ((b[2] - b[0]) + (b[3] - b[1])) / 2),
                "the scale is the geometric mean sqrt(w * h), not the mean side (w + h) / 2: a 20 x 800 pedestrian is level 3, not 4"),
        Mistake(lambda box: _level(box, lambda b: max(b[2] - b[0], b[3] - b[1])), "the scale is sqrt(w * h), not the longer side"),
    ),
))
