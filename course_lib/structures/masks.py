"""Instance masks: their one shape, their one threshold, COCO run-length encodings, and mask IoU.

Targets hold masks ``[N, H, W]`` (0/1); Mask R-CNN's predictions hold ``[N, 1, H, W]``
(probabilities, or 0/1 once thresholded). Every function here takes either: :func:`instance_masks`
is the one place that tells the two shapes apart.
"""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils
import torch

#: A soft mask covers a pixel where its probability exceeds this (Mask R-CNN's 0.5).
MASK_THRESHOLD = 0.5


def instance_masks(masks: torch.Tensor | np.ndarray) -> torch.Tensor:
    """[N, H, W] or [N, 1, H, W] masks of any dtype -> the same values as [N, H, W] (a view, no copy)."""
    masks = torch.as_tensor(masks)
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W] or [N, 1, H, W], got shape {tuple(masks.shape)}")
    return masks


def binary_masks(masks: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Masks as in :func:`instance_masks` (bool, integer 0/1, or float probabilities cut at
    :data:`MASK_THRESHOLD`) -> bool [N, H, W]."""
    masks = instance_masks(masks)
    return masks > MASK_THRESHOLD if masks.is_floating_point() else masks.bool()


def encode_rle(masks: torch.Tensor | np.ndarray) -> list[dict]:
    """Masks as in :func:`binary_masks` -> one COCO run-length encoding per mask, ``counts`` as str (JSON-ready)."""
    array = binary_masks(masks).cpu().numpy().astype(np.uint8)
    rles = mask_utils.encode(np.asfortranarray(array.transpose(1, 2, 0)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def mask_iou(masks_a: torch.Tensor | np.ndarray, masks_b: torch.Tensor | np.ndarray) -> torch.Tensor:
    """IoU of every mask of ``masks_a`` with every mask of ``masks_b``: float64 [N, K] on the CPU.

    Masks as in :func:`binary_masks`, both sets of one image size. Two empty masks have IoU 0
    (COCO's convention). The masks are compared as COCO run-length encodings by pycocotools, as
    COCO's evaluation does: after one pass to encode them, comparing two masks costs their runs, not
    their pixels, and no float copy of a frame-sized stack is made.
    """
    a, b = binary_masks(masks_a), binary_masks(masks_b)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"masks of different image sizes: {tuple(a.shape[1:])} and {tuple(b.shape[1:])}")
    if len(a) == 0 or len(b) == 0:
        return torch.zeros(len(a), len(b), dtype=torch.float64)
    ious = mask_utils.iou(encode_rle(a), encode_rle(b), [0] * len(b))  # 0: no crowd region among b
    return torch.from_numpy(np.asarray(ious, dtype=np.float64).reshape(len(a), len(b)))
