"""Exercises of the setup chapter and Week 1's first chapters: the input tensor, strides and receptive fields, anchors."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.transforms.v2 import functional as TF

from course_lib.exercises.core import Exercise, Mistake, register

# --- setup: the model's input --------------------------------------------------------------------


def to_model_input(image):
    """uint8 image [H, W, 3] -> float32 Tensor [3, H, W] in [0, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255


def _images(sizes, seed):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (h, w, 3), dtype=np.uint8),) for h, w in sizes]


def _model_input_generated():
    extremes = [(np.full((2, 3, 3), value, dtype=np.uint8),) for value in (0, 255)]
    return extremes + _images([(1, 1), (1, 7), (7, 1), (3, 3), (9, 16), (16, 9)], 10)


register(Exercise(
    name="model_input", chapter="book/00_setup", title="The model's input tensor", solution=to_model_input,
    cases=lambda: _images([(4, 6), (5, 3), (2, 2)], 0), generated=_model_input_generated,
    expected=lambda image: TF.to_dtype(TF.to_image(image), torch.float32, scale=True),
    agrees_with="torchvision's to_image + to_dtype(scale=True)",
    hint="channels first ([3, H, W], a permute), float, divided by 255",
    mistakes=(
        Mistake(lambda image: torch.from_numpy(image).permute(2, 0, 1).float(), "scale to [0, 1]: divide by 255 after converting to float"),
        Mistake(lambda image: torch.from_numpy(image).float().reshape(3, *image.shape[:2]) / 255,
                "reshape keeps the memory order and scrambles the pixels: permute(2, 0, 1) moves the channel axis"),
        Mistake(lambda image: torch.from_numpy(image).float() / 255, "torchvision wants channels first: [3, H, W], not [H, W, 3]"),
        Mistake(lambda image: torch.from_numpy(image).permute(2, 0, 1).float() / 256, "the largest uint8 value, 255, must become exactly 1.0: divide by 255"),
    ),
))


# --- feature maps ----------------------------------------------------------------------------------


def conv_output_size(size, kernel, stride, padding):
    """Length of a convolution's output along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def _conv_generated():
    edges = [(7, 7, 1, 0), (5, 9, 1, 2), (3, 3, 5, 0), (1, 1, 1, 0), (2, 1, 2, 0), (9, 3, 3, 1), (10, 3, 3, 1), (8, 2, 2, 0)]
    rng = np.random.default_rng(14)
    random = []
    while len(random) < 30:
        size, kernel, stride, padding = (int(v) for v in rng.integers([1, 1, 1, 0], [300, 12, 5, 4]))
        if size + 2 * padding >= kernel and padding <= kernel // 2:  # a valid convolution (torch's own rule for padding)
            random.append((size, kernel, stride, padding))
    return edges + random


register(Exercise(
    name="conv_output_size", chapter="book/week1/01_feature_maps", title="Output size of a convolution", solution=conv_output_size,
    cases=lambda: [(224, 7, 2, 3), (56, 3, 1, 1), (56, 3, 2, 1), (15, 3, 2, 1), (800, 1, 2, 0), (13, 4, 3, 0)], generated=_conv_generated,
    expected=lambda size, kernel, stride, padding: F.conv1d(torch.zeros(1, 1, size), torch.zeros(1, 1, kernel), stride=stride, padding=padding).shape[-1],
    agrees_with="torch.nn.functional.conv1d's output length",
    hint="floor((size + 2 * padding - kernel) / stride) + 1",
    mistakes=(
        Mistake(lambda size, kernel, stride, padding: (size + 2 * padding - kernel) // stride, "count the first position too: + 1"),
        Mistake(lambda size, kernel, stride, padding: (size - kernel) // stride + 1, "the padding adds `padding` pixels on BOTH sides"),
        Mistake(lambda size, kernel, stride, padding: math.ceil(size / stride), "size / stride holds only for 'same' padding; use the full formula"),
        Mistake(lambda size, kernel, stride, padding: math.ceil((size + 2 * padding - kernel) / stride) + 1,
                "floor, not ceil: a window that does not fit entirely inside the padded input is not computed"),
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
    """Independent truth: the span of input pixels with a non-zero gradient for one output of an all-ones conv stack.

    The span, not the count: with a kernel smaller than the stride before it, the field has holes.
    """
    stack = torch.nn.Sequential(*[torch.nn.Conv1d(1, 1, k, stride=s, bias=False, dtype=torch.float64) for k, s in layers])
    for conv in stack:
        torch.nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, 4 * receptive_field(layers) + 64, requires_grad=True, dtype=torch.float64)
    out = stack(x)
    out[0, 0, out.shape[-1] // 2].backward()
    seen = (x.grad[0, 0] != 0).nonzero().flatten()
    return int(seen[-1] - seen[0] + 1)


def _receptive_field_generated():
    edges = [([],), ([(3, 1)],), ([(1, 2), (1, 2)],), ([(1, 2), (3, 1)],), ([(2, 2), (2, 2), (2, 2)],), ([(3, 1)] * 6,), ([(7, 2), (3, 2), (1, 1)],)]
    rng = np.random.default_rng(15)
    random = [([(int(k), int(s)) for k, s in zip(rng.integers(1, 8, n), rng.integers(1, 4, n))],) for n in rng.integers(1, 6, 25)]
    return edges + random


register(Exercise(
    name="receptive_field", chapter="book/week1/01_feature_maps", title="Receptive field of a conv stack", solution=receptive_field,
    cases=lambda: [([(3, 1), (3, 1)],), ([(7, 2), (3, 2), (3, 1)],), ([(3, 2), (3, 2), (3, 2), (3, 2)],), ([(5, 1), (2, 2), (3, 1), (3, 2)],)],
    generated=_receptive_field_generated,
    expected=_receptive_field_by_gradient, agrees_with="the span of non-zero gradient of an all-ones conv stack",
    hint="each layer adds (kernel - 1) times the product of the strides of the layers BEFORE it; no layers: 1",
    mistakes=(
        Mistake(lambda layers: sum(k for k, _ in layers), "kernels do not simply add: a layer after a stride-s layer sees s times further"),
        Mistake(lambda layers: 1 + sum(k - 1 for k, _ in layers), "right for stride 1 only: multiply each (kernel - 1) by the strides before it"),
        Mistake(lambda layers: 1 + sum((k - 1) * math.prod(s for _, s in layers[: i + 1]) for i, (k, _) in enumerate(layers)),
                "use the strides of the layers BEFORE this one, not including its own"),
        Mistake(lambda layers: math.prod(k for k, _ in layers), "the kernels do not multiply: each layer ADDS (kernel - 1) input steps"),
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


def _anchor_generator(position, stride, size, aspect_ratio):
    """torchvision's AnchorGenerator: its cell anchor (half sizes rounded), shifted to the position's centre."""
    cell = AnchorGenerator().generate_anchors([size], [aspect_ratio], dtype=torch.float64)[0]
    return cell + torch.tensor([position[0] * stride, position[1] * stride] * 2, dtype=torch.float64)


def _anchor_roadmap(position, stride, size, aspect_ratio):
    cx, cy = position[0] * stride, position[1] * stride
    return (cx - size / 2, cy - size * aspect_ratio / 2, cx + size / 2, cy + size * aspect_ratio / 2)


def _anchor_generated():
    edges = [((0, 5), 16, 64, 1.0), ((5, 0), 16, 64, 1.0), ((3, 9), 8, 32, 0.25), ((9, 3), 8, 32, 4.0), ((1, 2), 4, 512, 0.1),
             ((30, 1), 64, 16, 10.0), ((0, 0), 32, 256, 1.0)]
    rng = np.random.default_rng(16)
    random = [((int(px), int(py)), int(rng.choice([4, 8, 16, 32, 64])), int(rng.choice([16, 32, 64, 128, 256, 512])), float(rng.choice([0.5, 1.0, 2.0, 1 / 3, 3.0])))
              for px, py in rng.integers(0, 60, (25, 2))]
    return edges + random


register(Exercise(
    name="anchor", chapter="book/week1/02_anchors", title="Compute an anchor", solution=anchor,
    cases=lambda: [((20, 15), 16, 256, 2.0), ((0, 0), 4, 32, 0.5), ((7, 3), 8, 64, 1.0), ((5, 9), 32, 128, 0.5), ((12, 2), 64, 512, 2.0)],
    generated=_anchor_generated,
    expected=_anchor_generator, agrees_with="torchvision's AnchorGenerator (within the half pixel it rounds to)", atol=0.5 + 1e-4,
    hint="centre = (p_x * stride, p_y * stride); w = size / sqrt(ratio), h = size * sqrt(ratio); corners = centre -/+ half size",
    mistakes=(
        Mistake(_anchor_roadmap, "the size fixes the AREA (size**2) and ratio = h / w, so w = size / sqrt(ratio), h = size * sqrt(ratio)"),
        Mistake(lambda p, s, size, r: anchor(p, s, size, 1 / r), "width and height are swapped: torchvision's aspect ratio is height / width"),
        Mistake(lambda p, s, size, r: tuple(v + s / 2 for v in anchor(p, s, size, r)),
                "the centre of position (p_x, p_y) is (p_x * stride, p_y * stride), not the middle of the stride cell"),
        Mistake(lambda p, s, size, r: anchor(p[::-1], s, size, r), "position is (p_x, p_y), column first: the centre is (p_x * stride, p_y * stride)"),
    ),
))


def anchor_count(image_size, strides, ratios_per_size):
    """Anchors of an FPN with one size per level on an (H, W) batch."""
    height, width = image_size
    return sum(math.ceil(height / s) * math.ceil(width / s) * ratios_per_size
               for s in strides)


def _anchor_generator_count(image_size, strides, ratios_per_size) -> int:
    """Independent truth: torchvision's AnchorGenerator on the maps a chain of stride-2 3x3 convolutions (padding 1) gives."""
    feature_maps, x, stride = [], torch.zeros(1, 1, *image_size), 1
    for target in strides:
        while stride < target:
            x, stride = F.max_pool2d(x, 3, stride=2, padding=1), stride * 2
        feature_maps.append(x)
    generator = AnchorGenerator(sizes=((32,),) * len(strides), aspect_ratios=(tuple(1.0 + i for i in range(ratios_per_size)),) * len(strides))
    return sum(len(a) for a in generator(ImageList(torch.zeros(1, 3, *image_size), [tuple(image_size)]), feature_maps))


def _anchor_count_generated():
    edges = [((20, 20), (64,), 3), ((1, 1), (4, 8), 1), ((127, 255), (4, 8, 16, 32, 64), 3), ((100, 30), (8, 16, 32), 2), ((64, 64), (4, 8, 16, 32, 64), 3), ((65, 63), (16,), 9)]
    rng = np.random.default_rng(17)
    random = [((int(h), int(w)), (4, 8, 16, 32, 64), 3) for h, w in rng.integers(16, 700, (8, 2))]
    return edges + random


register(Exercise(
    name="anchor_count", chapter="book/week1/02_anchors", title="Anchors of an FPN", solution=anchor_count,
    cases=lambda: [((512, 1024), (4, 8, 16, 32, 64), 3), ((128, 256), (4, 8, 16, 32, 64), 3), ((800, 1216), (4, 8, 16, 32, 64), 3), ((96, 160), (8, 16, 32, 64), 1)],
    generated=_anchor_count_generated,
    expected=_anchor_generator_count, agrees_with="torchvision's AnchorGenerator on the feature maps stride-2 convolutions give",
    hint="sum over the levels of ceil(H / stride) * ceil(W / stride) * anchors per position",
    mistakes=(
        Mistake(lambda image_size, strides, a: sum(math.ceil(image_size[0] / s) * math.ceil(image_size[1] / s) * a * len(strides) for s in strides),
                "each FPN level has ONE anchor size: anchors per position = number of ratios, not sizes x ratios"),
        Mistake(lambda image_size, strides, a: sum((image_size[0] // s) * (image_size[1] // s) * a for s in strides),
                "each stride-2 step rounds UP (ceil): a 2-pixel-wide map stays 1 wide, not 0"),
        Mistake(lambda image_size, strides, a: math.ceil(image_size[0] / strides[0]) * math.ceil(image_size[1] / strides[0]) * a,
                "every level of the pyramid has anchors: sum over all strides"),
        Mistake(lambda image_size, strides, a: sum(math.ceil(image_size[0] * image_size[1] / s**2) * a for s in strides),
                "round each SIDE up separately: ceil(H / s) * ceil(W / s), not ceil(H * W / s**2)"),
    ),
))
