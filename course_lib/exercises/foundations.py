"""Exercises of the setup chapter and Week 1 (foundations): tensors, strides, anchors, NMS, RoI Align, heads, metrics."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor
from torchvision.ops.poolers import LevelMapper
from torchvision.transforms.v2 import functional as TF

from course_lib.exercises.core import Exercise, Mistake, register
from course_lib.scratch.anchors import anchor_at, count_anchors, fpn_grid_sizes
from course_lib.scratch.roi import bilinear_sample


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_boxes(n: int, g: torch.Generator, extent: float = 60.0, size: float = 30.0) -> Tensor:
    xy = torch.rand(n, 2, generator=g) * extent
    return torch.cat([xy, xy + torch.rand(n, 2, generator=g) * size + 2], dim=1)


# --- setup: the model's input --------------------------------------------------------------------


def to_model_input(image):
    """uint8 image [H, W, 3] -> float32 Tensor [3, H, W] in [0, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255


register(Exercise(
    name="model_input", chapter="book/00_setup", title="The model's input tensor", solution=to_model_input,
    cases=lambda: [(np.random.default_rng(s).integers(0, 256, (h, w, 3), dtype=np.uint8),) for s, (h, w) in enumerate([(4, 6), (5, 3), (2, 2)])],
    expected=lambda image: TF.to_dtype(TF.to_image(image), torch.float32, scale=True),
    agrees_with="torchvision's to_image + to_dtype(scale=True)",
    hint="channels first ([3, H, W], a permute), float, divided by 255",
    mistakes=(
        Mistake(lambda image: torch.from_numpy(image).permute(2, 0, 1).float(), "scale to [0, 1]: divide by 255 after converting to float"),
        Mistake(lambda image: torch.from_numpy(image).float().reshape(3, *image.shape[:2]) / 255,
                "reshape keeps the memory order and scrambles the pixels: permute(2, 0, 1) moves the channel axis"),
        Mistake(lambda image: torch.from_numpy(image).float() / 255, "torchvision wants channels first: [3, H, W], not [H, W, 3]"),
    ),
))


# --- feature maps ----------------------------------------------------------------------------------


def conv_output_size(size, kernel, stride, padding):
    """Length of a convolution's output along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


register(Exercise(
    name="conv_output_size", chapter="book/week1/01_feature_maps", title="Output size of a convolution", solution=conv_output_size,
    cases=lambda: [(224, 7, 2, 3), (56, 3, 1, 1), (56, 3, 2, 1), (15, 3, 2, 1), (800, 1, 2, 0), (13, 4, 3, 0)],
    expected=lambda size, kernel, stride, padding: F.conv1d(torch.zeros(1, 1, size), torch.zeros(1, 1, kernel), stride=stride, padding=padding).shape[-1],
    agrees_with="torch.nn.functional.conv1d's output length",
    hint="floor((size + 2 * padding - kernel) / stride) + 1",
    mistakes=(
        Mistake(lambda size, kernel, stride, padding: (size + 2 * padding - kernel) // stride, "count the first position too: + 1"),
        Mistake(lambda size, kernel, stride, padding: (size - kernel) // stride + 1, "the padding adds `padding` pixels on BOTH sides"),
        Mistake(lambda size, kernel, stride, padding: math.ceil(size / stride), "size / stride holds only for 'same' padding; use the full formula"),
    ),
))


def receptive_field(layers):
    """Input pixels seen by one output of ``(kernel, stride)`` layers."""
    field, jump = 1, 1
    for kernel, stride in layers:
        field += (kernel - 1) * jump  # jump: input pixels per step here
        jump *= stride
    return field


def _receptive_field_by_gradient(layers) -> int:
    """Independent truth: input pixels with a non-zero gradient for one output of an all-ones conv stack."""
    stack = torch.nn.Sequential(*[torch.nn.Conv1d(1, 1, k, stride=s, bias=False) for k, s in layers])
    for conv in stack:
        torch.nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, 8 * receptive_field(layers) + 64, requires_grad=True)
    out = stack(x)
    out[0, 0, out.shape[-1] // 2].backward()
    return int((x.grad[0, 0] != 0).sum())


register(Exercise(
    name="receptive_field", chapter="book/week1/01_feature_maps", title="Receptive field of a conv stack", solution=receptive_field,
    cases=lambda: [([(3, 1), (3, 1)],), ([(7, 2), (3, 2), (3, 1)],), ([(3, 2), (3, 2), (3, 2), (3, 2)],), ([(5, 1), (2, 2), (3, 1), (3, 2)],)],
    expected=_receptive_field_by_gradient, agrees_with="the non-zero gradient of an all-ones conv stack",
    hint="each layer adds (kernel - 1) times the product of the strides of the layers BEFORE it",
    mistakes=(
        Mistake(lambda layers: sum(k for k, _ in layers), "kernels do not simply add: a layer after a stride-s layer sees s times further"),
        Mistake(lambda layers: 1 + sum(k - 1 for k, _ in layers), "right for stride 1 only: multiply each (kernel - 1) by the strides before it"),
        Mistake(lambda layers: 1 + sum((k - 1) * math.prod(s for _, s in layers[: i + 1]) for i, (k, _) in enumerate(layers)),
                "use the strides of the layers BEFORE this one, not including its own"),
    ),
))


# --- anchors -------------------------------------------------------------------------------------


def anchor(position, stride, size, aspect_ratio):
    """torchvision's anchor at ``position = (p_x, p_y)``: x1, y1, x2, y2."""
    centre_x, centre_y = position[0] * stride, position[1] * stride
    half_w = size / math.sqrt(aspect_ratio) / 2
    half_h = size * math.sqrt(aspect_ratio) / 2
    return (centre_x - half_w, centre_y - half_h,
            centre_x + half_w, centre_y + half_h)


def _anchor_roadmap(position, stride, size, aspect_ratio):
    cx, cy = position[0] * stride, position[1] * stride
    return (cx - size / 2, cy - size * aspect_ratio / 2, cx + size / 2, cy + size * aspect_ratio / 2)


register(Exercise(
    name="anchor", chapter="book/week1/02_anchors", title="Compute an anchor", solution=anchor,
    cases=lambda: [((20, 15), 16, 256, 2.0), ((0, 0), 4, 32, 0.5), ((7, 3), 8, 64, 1.0), ((5, 9), 32, 128, 0.5), ((12, 2), 64, 512, 2.0)],
    expected=anchor_at, agrees_with="torchvision's AnchorGenerator (within its 0.5 px rounding)", atol=0.5 + 1e-4,
    hint="centre = position * stride; w = size / sqrt(ratio), h = size * sqrt(ratio); corners = centre -/+ half size",
    mistakes=(
        Mistake(_anchor_roadmap, "the size fixes the AREA (size**2) and ratio = h / w, so w = size / sqrt(ratio), h = size * sqrt(ratio)"),
        Mistake(lambda p, s, size, r: anchor(p, s, size, 1 / r), "width and height are swapped: torchvision's aspect ratio is height / width"),
        Mistake(lambda p, s, size, r: tuple(v + s / 2 for v in anchor(p, s, size, r)),
                "the centre of position (p_x, p_y) is (p_x * stride, p_y * stride), not the middle of the stride cell"),
    ),
))


def anchor_count(image_size, strides, ratios_per_size):
    """Anchors of an FPN with one size per level on an (H, W) batch."""
    height, width = image_size
    return sum(math.ceil(height / s) * math.ceil(width / s) * ratios_per_size
               for s in strides)


register(Exercise(
    name="anchor_count", chapter="book/week1/02_anchors", title="Anchors of an FPN", solution=anchor_count,
    cases=lambda: [((512, 1024), (4, 8, 16, 32, 64), 3), ((128, 256), (4, 8, 16, 32, 64), 3), ((800, 1216), (4, 8, 16, 32, 64), 3), ((96, 160), (8, 16, 32, 64), 1)],
    expected=lambda image_size, strides, a: count_anchors(fpn_grid_sizes(image_size, strides), a),
    agrees_with="course_lib.scratch.anchors.count_anchors on the FPN's grid sizes",
    hint="sum over the levels of ceil(H / stride) * ceil(W / stride) * anchors per position",
    mistakes=(
        Mistake(lambda image_size, strides, a: sum(math.ceil(image_size[0] / s) * math.ceil(image_size[1] / s) * a * len(strides) for s in strides),
                "each FPN level has ONE anchor size: anchors per position = number of ratios, not sizes x ratios"),
        Mistake(lambda image_size, strides, a: sum((image_size[0] // s) * (image_size[1] // s) * a for s in strides),
                "each stride-2 step rounds UP (ceil): a 2-pixel-wide map stays 1 wide, not 0"),
        Mistake(lambda image_size, strides, a: math.ceil(image_size[0] / strides[0]) * math.ceil(image_size[1] / strides[0]) * a,
                "every level of the pyramid has anchors: sum over all strides"),
    ),
))


# --- NMS and IoU ---------------------------------------------------------------------------------


def iou(box_a, box_b):
    """IoU of two (x1, y1, x2, y2) boxes."""
    inter_w = max(0.0, min(box_a[2], box_b[2]) - max(box_a[0], box_b[0]))
    inter_h = max(0.0, min(box_a[3], box_b[3]) - max(box_a[1], box_b[1]))
    inter = inter_w * inter_h
    area_a = (box_a[2] - box_a[0]) * (box_a[3] - box_a[1])
    area_b = (box_b[2] - box_b[0]) * (box_b[3] - box_b[1])
    return inter / (area_a + area_b - inter)


def _iou_cases():
    fixed = [([0, 0, 10, 10], [5, 5, 15, 15]), ([0, 0, 10, 10], [20, 20, 30, 30]), ([0, 0, 10, 10], [12, 0, 20, 10]),
             ([0, 0, 10, 10], [2, 2, 5, 5]), ([0, 0, 10, 10], [0, 0, 10, 10]), ([0, 0, 10, 10], [10, 0, 20, 10])]
    random = _random_boxes(20, _generator(0), 50, 40).view(10, 2, 4).tolist()
    return [([float(v) for v in a], [float(v) for v in b]) for a, b in fixed + random]


def _area(box):
    return (box[2] - box[0]) * (box[3] - box[1])


def _overlap(a, b, clamp: bool = True):
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h) if clamp else w * h


register(Exercise(
    name="iou", chapter="book/week1/03_rpn_and_nms", title="IoU of two boxes", solution=iou, cases=_iou_cases,
    expected=lambda a, b: torchvision.ops.box_iou(torch.tensor([a]), torch.tensor([b])).item(), agrees_with="torchvision.ops.box_iou",
    hint="intersection = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1)); IoU = inter / (area_a + area_b - inter)",
    mistakes=(
        Mistake(lambda a, b: _overlap(a, b, clamp=False) / (_area(a) + _area(b) - _overlap(a, b, clamp=False)),
                "when the boxes do not overlap, clamp the intersection width and height at 0 (two negatives multiply to a positive)"),
        Mistake(lambda a, b: _overlap(a, b) / (_area(a) + _area(b)), "the union is area_a + area_b - intersection: the overlap was counted twice"),
        Mistake(lambda a, b: _overlap(a, b), "divide the intersection by the union"),
    ),
))


def nms(boxes, scores, iou_threshold):
    """Indices of the boxes greedy NMS keeps, highest score first."""
    overlaps = torchvision.ops.box_iou(boxes, boxes)
    keep = []
    for i in scores.argsort(descending=True).tolist():
        if all(overlaps[i, j] <= iou_threshold for j in keep):
            keep.append(i)
    return keep


def _nms_in_order(boxes, scores, iou_threshold, order):
    overlaps = torchvision.ops.box_iou(boxes, boxes)
    keep = []
    for i in order:
        if all(overlaps[i, j] <= iou_threshold for j in keep):
            keep.append(i)
    return keep


def _nms_cases():
    g = _generator(1)
    cases = [(torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]]), torch.tensor([0.6, 0.9, 0.5]), 0.5)]
    return cases + [(_random_boxes(n, g, 60, 30), torch.rand(n, generator=g), t) for n, t in [(8, 0.5), (30, 0.3), (60, 0.7), (100, 0.5)]]


register(Exercise(
    name="nms", chapter="book/week1/03_rpn_and_nms", title="Write NMS", solution=nms, cases=_nms_cases,
    expected=lambda boxes, scores, t: torchvision.ops.nms(boxes, scores, t), agrees_with="torchvision.ops.nms",
    hint="visit boxes by decreasing score; keep one unless its IoU with an already KEPT box is > the threshold",
    mistakes=(
        Mistake(lambda b, s, t: sorted(nms(b, s, t)), "the right boxes, in the wrong order: return the kept indices from highest to lowest score"),
        Mistake(lambda b, s, t: _nms_in_order(b, s, t, range(len(b))), "visit the boxes by decreasing score (argsort of the scores), not in input order"),
        Mistake(lambda b, s, t: [i for i in s.argsort(descending=True).tolist() if all(torchvision.ops.box_iou(b, b)[i, j] <= t for j in range(len(b)) if s[j] > s[i])],
                "suppress a box only by boxes that were KEPT, not by every higher-scoring box"),
    ),
))


# --- RoI Align -------------------------------------------------------------------------------------


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


def _bilinear_cases():
    g = _generator(2)
    feature_map = torch.randn(6, 8, generator=g)
    points = [(2.0, 3.0), (2.5, 3.5), (0.25, 6.75), (4.7, 1.2), (1.0, 6.5)]
    points += [tuple(p) for p in (torch.rand(6, 2, generator=g) * torch.tensor([5.0, 7.0])).tolist()]
    return [(feature_map, y, x) for y, x in points]


register(Exercise(
    name="bilinear", chapter="book/week1/04_roi_align", title="One bilinear sample", solution=bilinear, cases=_bilinear_cases,
    expected=lambda f, y, x: bilinear_sample(f[None], torch.tensor(y), torch.tensor(x)).item(), agrees_with="the RoI Align interpolation",
    hint="with y0 = floor(y), x0 = floor(x), ly = y - y0, lx = x - x0: (1-ly)(1-lx) f[y0,x0] + (1-ly) lx f[y0,x0+1] + ly (1-lx) f[y0+1,x0] + ly lx f[y0+1,x0+1]",
    mistakes=(
        Mistake(lambda f, y, x: float(f[round(y), round(x)]), "that is one cell's value (rounding, as RoI Pool does): mix the four neighbours with weights from the fractional parts"),
        Mistake(lambda f, y, x: float(f[int(y), int(x)]), "that is one cell's value (rounding, as RoI Pool does): mix the four neighbours with weights from the fractional parts"),
        Mistake(lambda f, y, x: bilinear(f.T, y, x), "x and y are swapped: feature_map[row, column] is feature_map[y, x]"),
    ),
))


def fpn_level(box):
    """The level k of the FPN map P_k that RoI Align reads for a box."""
    scale = math.sqrt((box[2] - box[0]) * (box[3] - box[1]))
    level = math.floor(4 + math.log2(scale / 224) + 1e-6)
    return min(5, max(2, level))


register(Exercise(
    name="fpn_level", chapter="book/week1/04_roi_align", title="The FPN level of a box", solution=fpn_level,
    cases=lambda: [([0.0, 0, 224, 224],), ([10.0, 10, 122, 122],), ([0.0, 0, 40, 20],), ([0.0, 0, 600, 500],), ([5.0, 5, 100, 300],), ([0.0, 0, 447, 447],), ([0.0, 0, 1000, 900],)],
    expected=lambda box: int(LevelMapper(2, 5)([torch.tensor([box])])[0]) + 2, agrees_with="torchvision's LevelMapper (MultiScaleRoIAlign)",
    hint="k = floor(4 + log2(sqrt(w * h) / 224)), clamped to the pyramid's levels 2..5",
    mistakes=(
        Mistake(lambda box: math.floor(4 + math.log2(math.sqrt((box[2] - box[0]) * (box[3] - box[1])) / 224) + 1e-6),
                "clamp the level to the levels the pyramid has: P2 (k = 2) to P5 (k = 5)"),
        Mistake(lambda box: min(5, max(2, round(4 + math.log2(math.sqrt((box[2] - box[0]) * (box[3] - box[1])) / 224)))),
                "floor, not round: a box moves up a level only once its scale reaches 224 * 2**(k - 4)"),
        Mistake(lambda box: min(5, max(2, math.floor(4 + math.log2((box[2] - box[0]) * (box[3] - box[1]) / 224 ** 2) + 1e-6))),
                "the scale is sqrt(w * h), a length, compared with 224 (not the area with 224**2)"),
    ),
))
