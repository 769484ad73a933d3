"""Instances in torchvision's detection format: the target dict, its boxes, batches (masks: :mod:`~course_lib.structures.masks`).

A target is ``{"boxes": [N, 4] XYXY, "masks": [N, H, W] uint8, "labels": [N] int64, "image_id": int,
"area": [N], "iscrowd": [N]}``, the format torchvision's detection models train on; a prediction
holds ``boxes``, ``labels``, ``scores`` and ``masks`` ``[N, 1, H, W]`` (probabilities, or 0/1).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """[N, H, W] masks -> [N, 4] float XYXY tight boxes covering whole pixels (empty mask -> zeros).

    An empty mask's zero box is dropped by ``SanitizeBoundingBoxes`` later. ``masks_to_boxes`` is
    given only the non-empty masks: before torchvision 0.26 it raises on an empty one.
    """
    masks = masks.as_subclass(torch.Tensor).bool()
    boxes = torch.zeros(masks.shape[0], 4, device=masks.device)
    filled = masks.flatten(1).any(dim=1)
    if filled.any():
        boxes[filled] = masks_to_boxes(masks[filled]) + torch.tensor([0.0, 0.0, 1.0, 1.0], device=masks.device)
    return boxes


def make_target(masks: torch.Tensor, labels: torch.Tensor, iscrowd: torch.Tensor, image_id: int) -> dict:
    """The target dict of the module docstring from [N, H, W] masks, [N] labels and [N] crowd flags."""
    masks = masks.to(torch.uint8)
    return {
        "boxes": tv_tensors.BoundingBoxes(boxes_from_masks(masks), format="XYXY", canvas_size=tuple(masks.shape[-2:])),
        "masks": tv_tensors.Mask(masks),
        "labels": labels.to(torch.int64),
        "image_id": image_id,
        "area": masks.flatten(1).sum(dim=1).to(torch.float32),
        "iscrowd": iscrowd.to(torch.int64),
    }


def collate(batch: Sequence[tuple]) -> tuple[list, list]:
    """DataLoader collate for detection: images differ in size, so keep lists instead of stacking."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def batch_to_device(samples: Sequence[tuple[torch.Tensor, dict]], device: torch.device) -> tuple[list[torch.Tensor], list[dict]]:
    """Lists of images and targets on ``device`` (Mask R-CNN takes lists: images may differ in size)."""
    images = [image.to(device) for image, _ in samples]
    targets = [{key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in target.items()}
               for _, target in samples]  # image_id is a plain int
    return images, targets
