"""Anchors: the fixed reference boxes the RPN scores and refines, built the way torchvision builds them.

An anchor is a rectangle centred on a feature-map position. Two facts decide its coordinates:

* its **shape**: ``size`` fixes the area (``size**2``) and ``aspect_ratio`` is **height / width**
  (torchvision's convention), so ``w = size / sqrt(r)`` and ``h = size * sqrt(r)``; torchvision
  then rounds the *half* sizes to whole pixels (``torch.round``, i.e. half to even);
* its **centre**: position ``(i, j)`` on a map of stride ``s`` is centred at ``(j*s, i*s)``, the
  top-left corner of the stride cell, not its middle.

Mask R-CNN with FPN uses one size per pyramid level (32 on P2 ... 512 on the pool level) and three
ratios, i.e. 3 anchors per position per level; the classic Faster R-CNN "9 anchors" put 3 sizes x 3
ratios on a single stride-16 map. Boxes are ``(x1, y1, x2, y2)`` unless a name says ``xywh``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.modules.utils import _pair

#: torchvision's Mask R-CNN FPN anchor configuration: one size per level, the same 3 ratios on each.
FPN_SIZES: tuple[tuple[int, ...], ...] = ((32,), (64,), (128,), (256,), (512,))
FPN_ASPECT_RATIOS: tuple[float, ...] = (0.5, 1.0, 2.0)
FPN_STRIDES: tuple[int, ...] = (4, 8, 16, 32, 64)


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> Tensor:
    """The anchors of one position, centred on (0, 0): ``Tensor[A, 4]`` with ``A = len(ratios) * len(sizes)``.

    Ordering is torchvision's: ratio-major, size-minor (row ``r * len(sizes) + k`` has ratio ``r``
    and size ``k``). Half-widths and half-heights are rounded, as ``AnchorGenerator`` does.
    """
    if len(sizes) == 0 or len(aspect_ratios) == 0:
        raise ValueError("cell_anchors needs at least one size and one aspect ratio, e.g. sizes=(32,), aspect_ratios=(0.5, 1.0, 2.0)")
    if min(aspect_ratios) <= 0 or min(sizes) <= 0:
        raise ValueError(f"sizes and aspect ratios must be positive, got sizes={sizes}, aspect_ratios={aspect_ratios}")
    scales = torch.as_tensor(sizes, dtype=torch.float32)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios)  # ratio = h / w and area = size**2
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (h_ratios[:, None] * scales[None, :]).view(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


def grid_anchors(cell: Tensor, grid_size: Sequence[int], stride: int | Sequence[int]) -> Tensor:
    """Tile the cell anchors over a ``grid_size = (H, W)`` map: ``Tensor[H * W * A, 4]`` in image pixels.

    ``stride`` is one int or ``(stride_y, stride_x)``. Rows are position-major (row-major over
    ``(i, j)``), then the ``A`` cell anchors, which is the order of the RPN head's flattened outputs.
    """
    (height, width), (stride_y, stride_x) = grid_size, _pair(stride)
    shift_y, shift_x = torch.meshgrid(
        torch.arange(height) * stride_y, torch.arange(width) * stride_x, indexing="ij"
    )
    shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)
    return (shifts + cell.view(1, -1, 4)).reshape(-1, 4)


def feature_strides(image_size: Sequence[int], grid_sizes: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """The per-level ``(stride_y, stride_x)`` that ``AnchorGenerator`` uses: padded image size // grid size.

    With the default 800/1333 resize the pool level of a 672x1344 batch is 11x21, so its y-stride
    comes out as 672 // 11 = 61, not 64: anchors follow this integer division, not the nominal stride.
    """
    return [(image_size[0] // g[0], image_size[1] // g[1]) for g in grid_sizes]


def fpn_grid_sizes(image_size: Sequence[int], strides: Sequence[int] = FPN_STRIDES) -> list[tuple[int, int]]:
    """Feature-map sizes of a ResNet-FPN on a padded ``(H, W)`` batch: each stride-2 step rounds up."""
    return [(math.ceil(image_size[0] / s), math.ceil(image_size[1] / s)) for s in strides]


def count_anchors(grid_sizes: Sequence[Sequence[int]], anchors_per_position: int | Sequence[int]) -> int:
    """Total anchors over all maps: sum of ``H * W * A`` (``A`` one int or one per map)."""
    per_map = [anchors_per_position] * len(grid_sizes) if isinstance(anchors_per_position, int) else anchors_per_position
    return sum(h * w * a for (h, w), a in zip(grid_sizes, per_map, strict=True))


def anchor_at(position: Sequence[int], stride: int, size: float, aspect_ratio: float) -> Tensor:
    """The torchvision anchor at feature-map ``position = (p_x, p_y)``: ``Tensor[4]`` as x1, y1, x2, y2."""
    p_x, p_y = position
    cell = cell_anchors([size], [aspect_ratio])[0]
    return cell + torch.tensor([p_x * stride, p_y * stride] * 2, dtype=cell.dtype)


def roadmap_anchor_xywh(position: Sequence[int], stride: int, size: float, aspect_ratio: float) -> Tensor:
    """The simplified anchor of the course roadmap: width = ``size``, height = ``size * aspect_ratio``.

    Returns ``Tensor[4]`` as (x, y, w, h) with (x, y) the top-left corner. Unlike torchvision this
    does not keep the area at ``size**2`` and does not round, so the two disagree for ratio != 1.
    """
    p_x, p_y = position
    w, h = float(size), float(size) * aspect_ratio
    return torch.tensor([p_x * stride - w / 2, p_y * stride - h / 2, w, h])

