"""Who is responsible for an object? Ground-truth assignment in grid, point and anchor detectors.

A detector learns by assigning each ground-truth object to some of its outputs. Three schemes:

* **one object per grid cell** (YOLOv1): the cell containing the box centre owns the object, and a
  cell predicts one class, so two objects whose centres fall in the same cell compete for it;
* **points inside the box** (FCOS and anchor-free YOLO heads, simplified): every feature-map
  location on strides 8/16/32 whose centre lies inside a box is a candidate; a location inside
  several boxes goes to the smallest one;
* **anchors by IoU** (Faster/Mask R-CNN's RPN): torchvision's ``Matcher`` gives each anchor the
  object it overlaps most (IoU >= 0.7), and each object keeps its best anchors even below 0.7.

For each scheme we count the *orphans*: objects that no output is trained to find.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_area, box_iou

FPN_ANCHOR_SIZES = ((32,), (64,), (128,), (256,), (512,))
FPN_ASPECT_RATIOS = ((0.5, 1.0, 2.0),) * 5


def grid_cell_orphans(boxes: Tensor, image_size: tuple[int, int], grid: tuple[int, int]) -> Tensor:
    """Objects that lose their centre cell to another object on a ``grid`` (rows, cols) of cells.

    boxes: [N, 4] XYXY. Returns a bool [N] mask. In each cell holding k > 1 centres, the k - 1
    smaller objects are orphans (the cell can be trained for one class and one object).
    """
    height, width = image_size
    rows, cols = grid
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    col = (centres[:, 0] * cols / width).long().clamp(0, cols - 1)
    row = (centres[:, 1] * rows / height).long().clamp(0, rows - 1)
    cell = row * cols + col
    areas = box_area(boxes)
    orphans = torch.zeros(len(boxes), dtype=torch.bool)
    for c in cell.unique():
        members = (cell == c).nonzero().flatten()
        if len(members) > 1:
            keeper = members[areas[members].argmax()]
            orphans[members[members != keeper]] = True
    return orphans


def point_orphans(boxes: Tensor, image_size: tuple[int, int], strides: Sequence[int] = (8, 16, 32)) -> Tensor:
    """Objects that own no feature-map location when each location goes to the smallest box containing it.

    boxes: [N, 4] XYXY. Returns a bool [N] mask.
    """
    height, width = image_size
    owned = torch.zeros(len(boxes), dtype=torch.bool)
    areas = box_area(boxes)
    for stride in strides:
        ys = torch.arange(stride / 2, height, stride)
        xs = torch.arange(stride / 2, width, stride)
        py, px = torch.meshgrid(ys, xs, indexing="ij")
        px, py = px.reshape(-1, 1), py.reshape(-1, 1)
        inside = (px >= boxes[:, 0]) & (px < boxes[:, 2]) & (py >= boxes[:, 1]) & (py < boxes[:, 3])  # [P, N]
        candidates = inside.any(dim=1)
        masked_area = torch.where(inside, areas, torch.full_like(areas, float("inf")))
        winner = masked_area[candidates].argmin(dim=1)
        owned[winner.unique()] = True
    return ~owned


def anchor_orphans(boxes: Tensor, image_size: tuple[int, int],
                   sizes=FPN_ANCHOR_SIZES, aspect_ratios=FPN_ASPECT_RATIOS) -> Tensor:
    """Objects that no anchor is matched to by the RPN's ``Matcher(0.7, 0.3, allow_low_quality_matches=True)``.

    boxes: [N, 4] XYXY in an image of ``image_size`` (H, W). Returns a bool [N] mask.
    """
    height, width = image_size
    generator = AnchorGenerator(sizes, aspect_ratios)
    feature_maps = [torch.zeros(1, 1, -(-height // s), -(-width // s)) for s in (4, 8, 16, 32, 64)]
    images = ImageList(torch.zeros(1, 3, height, width), [(height, width)])
    anchors = generator(images, feature_maps)[0]
    matched = Matcher(0.7, 0.3, allow_low_quality_matches=True)(box_iou(boxes, anchors))
    owned = torch.zeros(len(boxes), dtype=torch.bool)
    owned[matched[matched >= 0].unique()] = True
    return ~owned


def orphan_rates(targets: Sequence[dict], image_size: tuple[int, int], yolo_grid: tuple[int, int] = (7, 7),
                 strides: Sequence[int] = (8, 16, 32)) -> dict[str, float]:
    """Fraction of objects left without a responsible output, per scheme, over many images."""
    counts = {"objects": 0, "grid_cell": 0, "points": 0, "anchors": 0}
    for target in targets:
        boxes = target["boxes"].float()
        if len(boxes) == 0:
            continue
        counts["objects"] += len(boxes)
        counts["grid_cell"] += int(grid_cell_orphans(boxes, image_size, yolo_grid).sum())
        counts["points"] += int(point_orphans(boxes, image_size, strides).sum())
        counts["anchors"] += int(anchor_orphans(boxes, image_size).sum())
    total = max(counts["objects"], 1)
    return {"objects": counts["objects"], **{k: counts[k] / total for k in ("grid_cell", "points", "anchors")}}
