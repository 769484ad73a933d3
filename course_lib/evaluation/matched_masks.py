"""Mask quality beyond AP: the IoU of each matched mask, and how confident a soft mask is (maskness)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from course_lib.structures.masks import MASK_THRESHOLD, mask_iou
from course_lib.structures.matching import gate_by_class, match_pairs


def kept_indices(prediction: dict, score_threshold: float) -> torch.Tensor:
    """Indices of the predictions scoring at least ``score_threshold``."""
    return torch.nonzero(torch.as_tensor(prediction["scores"]) >= score_threshold).flatten()


def object_indices(target: dict) -> torch.Tensor:
    """Indices of the target instances that are objects, not crowd regions."""
    crowd = torch.as_tensor(target.get("iscrowd", torch.zeros(len(target["labels"]))))
    return torch.nonzero(crowd == 0).flatten()


def matched_mask_ious(
    predictions: Sequence[dict], targets: Sequence[dict], iou_threshold: float = 0.5, score_threshold: float = 0.5
) -> list[float]:
    """Mask IoU of every matched (prediction, target) pair of the same class.

    Predictions scoring under ``score_threshold`` are left out (the ones a user would see); within
    each image, predictions and targets of the same class are matched one-to-one by
    :func:`match_pairs`. Crowd targets are not objects and take no part.
    """
    matched = []
    for prediction, target in zip(predictions, targets):
        kept, objects = kept_indices(prediction, score_threshold), object_indices(target)
        ious = gate_by_class(mask_iou(prediction["masks"][kept], target["masks"][objects]),
                             prediction["labels"][kept], target["labels"][objects])
        matched += [float(ious[p, g]) for p, g in match_pairs(ious, iou_threshold)]
    return matched


def mean_matched_mask_iou(
    predictions: Sequence[dict], targets: Sequence[dict], iou_threshold: float = 0.5, score_threshold: float = 0.5
) -> float:
    """Mean of :func:`matched_mask_ious`: how well the masks that *are* found fit, which AP mixes
    with detection quality. NaN when nothing matched."""
    matched = matched_mask_ious(predictions, targets, iou_threshold, score_threshold)
    return float(np.mean(matched)) if matched else float("nan")


def maskness(masks: torch.Tensor) -> torch.Tensor:
    """[P, 1, H, W] soft masks -> [P]: each mask's mean probability over its pixels above 0.5 (0 if none).

    A training-free estimate of mask quality (SOLOv2's "maskness"): a confident, sharp mask scores
    near 1, a blurred one near 0.5. Mask R-CNN ranks detections by the box classifier's score,
    which says nothing about the mask; Mask Scoring R-CNN (Huang et al. 2019) learns a mask-IoU
    head for this, and multiplying the score by the maskness is its free approximation.
    """
    probs = masks.flatten(1)
    foreground = probs > MASK_THRESHOLD
    return (probs * foreground).sum(1) / foreground.sum(1).clamp(min=1)
