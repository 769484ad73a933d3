"""Training augmentation with ``torchvision.transforms.v2``: flip, scale jitter, small rotation, colour.

v2 transforms move the image, the ``tv_tensors.Mask`` and the ``tv_tensors.BoundingBoxes`` of a
target together. Two details need care for instance segmentation:

- A rotation (or any affine map with a rotation) is applied to a box by rotating its four corners
  and taking their enclosing box. That box contains the rotated object but is loose: for a
  rounded shape rotated by 30 degrees its IoU with the object's true tight box is about 0.6-0.7.
  The mask, however, is rotated pixel by pixel, so :class:`BoxesFromMasks` recomputes every box
  (and area) from its transformed mask.
- Instances can leave the frame or shrink to nothing; ``SanitizeBoundingBoxes`` then removes them
  together with their masks and the per-instance tensors of
  ``PER_INSTANCE_KEYS`` (``labels``, ``iscrowd``, ``area``, and ToyCity's ``occlusion``, ``depth``, ``track_ids``).

Scale jitter is a zoom *inside a fixed canvas* (``RandomAffine(scale=...)``), not an image resize:
Mask R-CNN's own transform resizes every input to ``min_size``, which would undo a resize.
"""

from __future__ import annotations

from typing import Callable

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from course_lib.structures.instances import boxes_from_masks

#: A dataset's ``transforms``: ``(image, target) -> (image, target)``, as the v2 transforms are called.
Transforms = Callable[[tv_tensors.Image, dict], tuple[tv_tensors.Image, dict]]


class BoxesFromMasks:
    """Replace each target box (and area) by the tight box (pixel count) of its mask."""

    def __call__(self, image: tv_tensors.Image, target: dict) -> tuple[tv_tensors.Image, dict]:
        masks = target["masks"]
        target = dict(target)
        target["boxes"] = tv_tensors.BoundingBoxes(boxes_from_masks(masks), format="XYXY",
                                                   canvas_size=tuple(masks.shape[-2:]))
        target["area"] = masks.flatten(1).sum(dim=1).to(torch.float32).as_subclass(torch.Tensor)
        return image, target

    def __repr__(self) -> str:
        return "BoxesFromMasks()"


#: Per-instance tensors (besides boxes and masks) that must be filtered together with the boxes.
PER_INSTANCE_KEYS = ("labels", "iscrowd", "area", "occlusion", "depth", "track_ids")


def _per_instance_tensors(inputs: tuple) -> tuple[torch.Tensor, ...]:
    """What SanitizeBoundingBoxes must filter besides boxes and masks (which it finds itself)."""
    target = inputs[1]
    return tuple(target[key] for key in PER_INSTANCE_KEYS if key in target)


def sanitize() -> v2.SanitizeBoundingBoxes:
    """Drop instances whose box is under 1 pixel wide or high, with their masks and labels."""
    return v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=_per_instance_tensors)


def train_transforms(
    flip_p: float = 0.5,
    scale_range: tuple[float, float] = (0.8, 1.25),
    max_rotation: float = 10.0,
    color: float = 0.2,
) -> v2.Compose:
    """Random flip, zoom in ``scale_range``, rotation in +-``max_rotation`` degrees, colour jitter.

    Takes and returns ``(image, target)`` in :mod:`course_lib.data.catalog` format (a PIL or uint8 image
    is converted to float [0, 1] first).
    """
    return v2.Compose([
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.RandomHorizontalFlip(p=flip_p),
        v2.RandomAffine(degrees=max_rotation, scale=scale_range),
        v2.ColorJitter(brightness=color, contrast=color, saturation=color, hue=color / 4),
        BoxesFromMasks(),
        sanitize(),
    ])


def eval_transforms() -> v2.Compose:
    """No randomness: only the conversion to a float [0, 1] ``tv_tensors.Image``."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
