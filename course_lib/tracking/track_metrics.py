"""Evaluating trackers on ToyCity clips: identity switches, mask flicker, and TrackEval's HOTA family.

:func:`compare_trackers` is the one comparison of the course: trackers by name
(:data:`course_lib.tracking.trackers.TRACKERS`, the course's settings and boxmot's) on the same
detections of several clips, scored by TrackEval, timed frame by frame and measured for flicker.

Detections come from a model, or from the ground truth with noise (:func:`noisy_detections`) so
that the tracker can be tested without a trained model: boxes jitter, mask boundaries grow or
shrink by a pixel, and chosen objects can be hidden for a few frames (a missed detection).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou, masks_to_boxes

from course_lib.evaluation.mots import evaluate_mots
from course_lib.structures.masks import instance_masks, mask_iou
from course_lib.structures.matching import gate_by_class, match_pairs
from course_lib.tracking.mask_rois import masks_to_rois
from course_lib.tracking.track import tracks_to_frame
from course_lib.tracking.trackers import FrameTracker, make_tracker
from course_lib.utils import timing

CPU = torch.device("cpu")

#: Side of the box-aligned grid on which :func:`mask_flicker` compares a track's masks.
FLICKER_ROI = 56


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


def run_tracker(tracker: FrameTracker, detections: Sequence[dict], height: int, width: int) -> list[dict[str, Tensor]]:
    """Track a clip's detections with a fresh ``tracker``: one frame dict with ``track_ids`` per frame."""
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


def mask_flicker(frames: Sequence[dict], roi_size: int = FLICKER_ROI) -> float:
    """Mean ``1 - IoU`` of a track's masks in consecutive frames, after removing the object's motion.

    Each mask is resampled inside its own tight bounding box (:func:`course_lib.tracking.mask_rois.masks_to_rois`),
    which cancels translation and scaling; what remains is shape change: articulation (legs,
    pedals), occlusion coming and going, and noise. Compare a tracker's value with the ground
    truth's own. NaN when no track spans two consecutive frames.
    """
    changes = _shape_changes(frames, roi_size)
    return float(np.mean(changes)) if changes else float("nan")


def _shape_changes(frames: Sequence[dict], roi_size: int) -> list[float]:
    """``1 - IoU`` of each track's box-aligned masks, one per pair of consecutive frames it spans."""
    changes = []
    previous: dict[int, Tensor] = {}
    for frame in frames:
        current: dict[int, Tensor] = {}
        if len(frame["masks"]):
            masks = instance_masks(frame["masks"])
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
    return changes


def compare_trackers(
    names: Sequence[str],
    targets: Mapping[str, Sequence[dict]],
    detections: Mapping[str, Sequence[dict]],
    workdir: str,
    frame_rate: float = 30.0,
) -> dict[str, dict[str, float]]:
    """Run each tracker of ``names`` (:data:`~course_lib.tracking.trackers.TRACKERS`) on the same detections of several clips; score and time them.

    ``targets``, ``detections``: ``{clip name: per-frame dicts}`` (ground truth with ``track_ids``;
    detections as :meth:`course_lib.tracking.track.Tracker.update` takes them). Every tracker starts
    afresh on each clip. The trackers take turns frame by frame, so that a slower or busier moment
    of the machine falls on all of them alike; ``ms_per_frame`` is the median time of ``update``
    alone (for a boxmot tracker, with the adapter's conversions), ``ms_per_frame_mean`` its mean.
    Returns ``{tracker: {HOTA, DetA, AssA, IDF1, MOTA, IDSW, ms_per_frame, ms_per_frame_mean, flicker}}``:
    TrackEval's combination over all clips and classes (:func:`course_lib.evaluation.mots.evaluate_mots`,
    its files under ``workdir``) and the :func:`mask_flicker` of every pair of consecutive frames
    of every clip. The ground truth's own flicker is ``mask_flicker`` of a clip's targets.
    """
    tracked: dict[str, dict[str, list[dict]]] = {name: {} for name in names}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for clip_name, frames in detections.items():
        height, width = targets[clip_name][0]["masks"].shape[-2:]
        trackers = {name: make_tracker(name, frame_rate) for name in names}
        for name in names:
            tracked[name][clip_name] = []
        for frame in frames:
            for name, tracker in trackers.items():
                with timing.Stopwatch(CPU) as clock:  # trackers compute on the CPU
                    tracks = tracker.update(frame)
                seconds[name].append(clock.seconds)
                tracked[name][clip_name].append(tracks_to_frame(tracks, height, width))
    scores = evaluate_mots({clip: targets[clip] for clip in detections}, tracked, workdir)
    table = {}
    for name in names:
        spent = timing.summary(seconds[name])
        changes = [change for frames in tracked[name].values() for change in _shape_changes(frames, FLICKER_ROI)]
        table[name] = {**scores[name]["all"],
                       "ms_per_frame": 1e3 * spent.median, "ms_per_frame_mean": 1e3 * spent.mean,
                       "flicker": float(np.mean(changes)) if changes else float("nan")}
    return table


def crossings(targets: Sequence[dict], min_iou: float = 0.2) -> dict[tuple[int, int], list[int]]:
    """``{(id a, id b): frames}`` for same-class objects whose boxes overlap with IoU > ``min_iou``.

    These are the moments a tracker can confuse two objects: the hard cases to look at.
    """
    pairs: dict[tuple[int, int], list[int]] = {}
    for frame, target in enumerate(targets):
        overlap = gate_by_class(box_iou(target["boxes"], target["boxes"]), target["labels"], target["labels"])
        for a, b in (overlap > min_iou).triu(1).nonzero().tolist():
            pairs.setdefault((int(target["track_ids"][a]), int(target["track_ids"][b])), []).append(frame)
    return pairs
