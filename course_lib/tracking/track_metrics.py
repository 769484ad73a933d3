"""Evaluating trackers on ToyCity clips: identity switches, mask flicker, and TrackEval's HOTA family.

Four trackers are compared throughout Week 3, all :class:`course_lib.tracking.track.Tracker` settings:

* ``none``: a new id for every detection in every frame (what a detector alone gives),
* ``iou``: frame-to-frame mask-IoU matching only (no memory across a missed frame, no box-IoU
  fallback for thin or sliced masks, no smoothing),
* ``full``: the course tracker (tentative/confirmed states, re-identification after occlusion,
  constant-velocity prediction with a fixed-gain alpha-beta filter, EMA smoothing of masks and boxes),
* ``kalman``: the same with a Kalman filter on centre, size and their rates (:mod:`course_lib.tracking.kalman`).

Detections come from a model, or from the ground truth with noise (:func:`noisy_detections`) so
that the tracker can be tested without a trained model: boxes jitter, mask boundaries grow or
shrink by a pixel, and chosen objects can be hidden for a few frames (a missed detection).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou, masks_to_boxes

from course_lib.evaluation.mots import evaluate_mots
from course_lib.structures.masks import mask_iou
from course_lib.structures.matching import match_pairs
from course_lib.tracking.mask_rois import masks_to_rois
from course_lib.tracking.track import Tracker, tracks_to_frame

#: Tracker settings of the three modes compared in the course.
MODES: dict[str, dict] = {
    "none": dict(iou_gate=1.01, box_gate=1.01, min_hits=1, max_age=0, mask_alpha=1.0, box_alpha=1.0, motion="none"),
    "iou": dict(box_gate=1.01, min_hits=1, max_age=0, mask_alpha=1.0, box_alpha=1.0, motion="none"),
    "full": dict(),  # Tracker's defaults
    "kalman": dict(motion="kalman"),  # the same with a Kalman filter in place of the alpha-beta filter
}


def noisy_detections(
    targets: Sequence[dict],
    seed: int = 0,
    box_jitter: float = 1.0,
    mask_noise: float = 0.2,
    hide: dict[int, Sequence[int]] | None = None,
) -> list[dict[str, Tensor]]:
    """Detections made from ground-truth targets, one dict per frame (what a good detector would give).

    ``box_jitter``: std of the Gaussian noise added to box corners (pixels). ``mask_noise``: the
    probability that a pixel on a mask's boundary (inside or outside) flips in a frame, which
    makes edges ragged and flicker as a detector's do; thin parts (a bicycle's frame) survive.
    ``hide``: ``{track_id: frames}`` in which that object is not detected (a missed detection).
    Scores are drawn in [0.7, 1.0). Needs targets with ``track_ids`` (to hide objects).
    """
    rng = np.random.default_rng(seed)
    hide = hide or {}
    detections = []
    for frame, target in enumerate(targets):
        keep = torch.tensor([frame not in hide.get(int(i), ()) for i in target["track_ids"]], dtype=torch.bool)
        masks = target["masks"][keep]
        boxes = target["boxes"][keep] + torch.from_numpy(rng.normal(0, box_jitter, (int(keep.sum()), 4))).float()
        flip = torch.from_numpy(rng.random(masks.shape) < mask_noise)
        detections.append({
            "boxes": boxes,
            "labels": target["labels"][keep],
            "scores": torch.from_numpy(rng.uniform(0.7, 1.0, len(masks))).float(),
            "masks": _ragged(masks, flip) if len(masks) else masks,
        })
    return detections


def _ragged(masks: Tensor, flip: Tensor) -> Tensor:
    """Flip each boundary pixel of ``masks`` ``[N, H, W]`` where ``flip`` (same shape, bool) is set.

    Boundary pixels are those a 3x3 dilation or erosion would change: the mask's edge on both sides.
    """
    m = masks.float()[:, None]
    boundary = (F.max_pool2d(m, 3, stride=1, padding=1) != -F.max_pool2d(-m, 3, stride=1, padding=1))[:, 0]
    return torch.where(boundary & flip, 1 - masks, masks)


def run_tracker(detections: Sequence[dict], height: int, width: int, **settings) -> list[dict[str, Tensor]]:
    """Track a clip's detections with ``Tracker(**settings)``: one frame dict with ``track_ids`` per frame."""
    tracker = Tracker(**settings)
    return [tracks_to_frame(tracker.update(d), height, width) for d in detections]


def match_to_ground_truth(gt: dict, pred: dict, iou_threshold: float = 0.5) -> dict[int, int]:
    """``{gt track id: predicted track id}`` for pairs of one frame with mask IoU >= threshold (one-to-one)."""
    if len(gt["masks"]) == 0 or len(pred["masks"]) == 0:
        return {}
    pairs = match_pairs(mask_iou(gt["masks"], pred["masks"]), iou_threshold)
    return {int(gt["track_ids"][r]): int(pred["track_ids"][c]) for r, c in pairs}


def id_switches(gt_frames: Sequence[dict], pred_frames: Sequence[dict], iou_threshold: float = 0.5) -> int:
    """CLEAR-MOT identity switches: times a ground-truth object is matched to another id than before.

    A ground-truth object that is missed for some frames and then matched to its old id does not
    count; matched to a new id, it does. (TrackEval's ``IDSW`` counts the same thing.)
    """
    last: dict[int, int] = {}
    switches = 0
    for gt, pred in zip(gt_frames, pred_frames, strict=True):
        for gt_id, pred_id in match_to_ground_truth(gt, pred, iou_threshold).items():
            switches += gt_id in last and last[gt_id] != pred_id
            last[gt_id] = pred_id
    return switches


def mask_flicker(frames: Sequence[dict], roi_size: int = 56) -> float:
    """Mean ``1 - IoU`` of a track's masks in consecutive frames, after removing the object's motion.

    Each mask is resampled inside its own tight bounding box (:func:`course_lib.tracking.mask_rois.masks_to_rois`),
    which cancels translation and scaling; what remains is shape change: articulation (legs,
    pedals), occlusion coming and going, and noise. Compare a tracker's value with the ground
    truth's own. NaN when no track spans two consecutive frames.
    """
    changes = []
    previous: dict[int, Tensor] = {}
    for frame in frames:
        current: dict[int, Tensor] = {}
        if len(frame["masks"]):
            masks = frame["masks"][:, 0] if frame["masks"].dim() == 4 else frame["masks"]
            present = masks.flatten(1).any(1).bool()
            ids = frame["track_ids"][present]
            rois = masks_to_rois(masks[present], masks_to_boxes(masks[present]) + torch.tensor([0, 0, 1, 1]), roi_size) > 0.5
            current = {int(i): roi for i, roi in zip(ids, rois)}
        for track_id, roi in current.items():
            if track_id in previous:
                before = previous[track_id]
                union = (roi | before).sum()
                changes.append(1 - float((roi & before).sum() / union) if union else 0.0)
        previous = current
    return float(np.mean(changes)) if changes else float("nan")


def compare_trackers(
    targets: Sequence[dict],
    detections: Sequence[dict],
    workdir: str,
    modes: dict[str, dict] = MODES,
) -> dict[str, dict[str, float]]:
    """Track ``detections`` in each mode and score against ``targets`` (one clip).

    Returns ``{mode: {HOTA, DetA, AssA, IDF1, MOTA, IDSW, flicker}}`` with TrackEval's class-aware
    combination (``"all"`` of :func:`course_lib.evaluation.mots.evaluate_mots`) and :func:`mask_flicker`;
    plus ``"ground truth": {"flicker": ...}`` for reference. TrackEval's files go under ``workdir``.
    """
    height, width = targets[0]["masks"].shape[-2:]
    tracked = {mode: run_tracker(detections, height, width, **settings) for mode, settings in modes.items()}
    scores = evaluate_mots(targets, tracked, workdir)
    table = {mode: {**scores[mode]["all"], "flicker": mask_flicker(frames)} for mode, frames in tracked.items()}
    table["ground truth"] = {"flicker": mask_flicker(targets)}
    return table


def crossings(targets: Sequence[dict], min_iou: float = 0.2) -> dict[tuple[int, int], list[int]]:
    """``{(id a, id b): frames}`` for same-class objects whose boxes overlap with IoU > ``min_iou``.

    These are the moments a tracker can confuse two objects: the hard cases to look at.
    """
    pairs: dict[tuple[int, int], list[int]] = {}
    for frame, target in enumerate(targets):
        same_class = target["labels"][:, None] == target["labels"][None, :]
        for a, b in ((box_iou(target["boxes"], target["boxes"]) > min_iou) & same_class).triu(1).nonzero().tolist():
            pairs.setdefault((int(target["track_ids"][a]), int(target["track_ids"][b])), []).append(frame)
    return pairs
