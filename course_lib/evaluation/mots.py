"""MOTS (multi-object tracking and segmentation): the text format and TrackEval's scores.

One line per object and frame, as in KITTI MOTS and MOTSChallenge:

    time_frame id class_id img_height img_width rle

``id = class_id * 1000 + track id`` (so track ids must stay below 1000) and ``rle`` is the COCO
compressed RLE string of the object's mask (pycocotools). MOTS needs each pixel to belong to at
most one object; :func:`make_disjoint` settles overlaps of a tracker's masks, higher score first.

:func:`evaluate_mots` runs TrackEval's MOTSChallenge evaluation (HOTA, CLEAR, Identity). That
benchmark knows one class, so each course class is written as its own sequence: per-class
scores are TrackEval's per-sequence results, and ``"all"`` is its combination over sequences,
i.e. class-aware (an object is only ever matched to a prediction of its own class).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pycocotools.mask as mask_utils
import torch

from course_lib.classes import CLASSES
from course_lib.structures.masks import binary_masks

#: MOTSChallenge's id for its one class ("pedestrian"), used for every class in evaluate_mots.
MOTS_CHALLENGE_CLASS_ID = 2


def make_disjoint(masks: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
    """Give each pixel to one mask only: the highest-scoring one (or the first listed, without scores).

    bool [N, H, W] (+ float [N]) -> bool [N, H, W] with no pixel in two masks.
    """
    order = torch.argsort(scores, descending=True, stable=True) if scores is not None else torch.arange(len(masks))
    taken = torch.zeros(masks.shape[1:], dtype=torch.bool)
    out = torch.zeros_like(masks)
    for i in order.tolist():
        out[i] = masks[i] & ~taken
        taken |= out[i]
    return out


def mots_lines(frames: Sequence[Mapping], class_id: int | None = None, first_frame: int = 1) -> list[str]:
    """The MOTS text lines of a sequence of frames.

    Each frame is a dict with ``track_ids`` [N], ``labels`` [N] (course class indices) and
    ``masks`` (see :func:`binary_masks`), optionally ``scores`` [N]. ``class_id`` overrides
    every object's class column (``None``: the course class index). Frames are numbered from
    ``first_frame`` (MOTSChallenge counts from 1, KITTI MOTS from 0). Objects whose mask is
    empty after :func:`make_disjoint` are left out.
    """
    lines = []
    for t, frame in enumerate(frames, start=first_frame):
        masks = binary_masks(frame["masks"])
        scores = frame.get("scores")
        masks = make_disjoint(masks, None if scores is None else torch.as_tensor(scores))
        height, width = masks.shape[1:]
        track_ids = torch.as_tensor(frame["track_ids"]).tolist()
        labels = torch.as_tensor(frame["labels"]).tolist()
        if any(not 0 <= track < 1000 for track in track_ids):
            raise ValueError(f"MOTS ids are class_id * 1000 + track id: track ids must be in 0..999, got {track_ids}")
        rles = mask_utils.encode(np.asfortranarray(masks.permute(1, 2, 0).numpy().astype(np.uint8)))
        for track, label, mask, rle in zip(track_ids, labels, masks, rles):
            if not mask.any():
                continue
            cls = label if class_id is None else class_id
            lines.append(f"{t} {cls * 1000 + track} {cls} {height} {width} {rle['counts'].decode('ascii')}")
    return lines


def write_mots(path: str | Path, frames: Sequence[Mapping], *, class_id: int | None = None, first_frame: int = 1) -> Path:
    """Write :func:`mots_lines` of ``frames`` to ``path`` (folders created); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = mots_lines(frames, class_id, first_frame)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def only_class(frames: Sequence[Mapping], label: int) -> list[dict]:
    """The frames restricted to objects of one class."""
    out = []
    for frame in frames:
        keep = torch.as_tensor(frame["labels"]) == label
        out.append({k: torch.as_tensor(v)[keep] for k, v in frame.items() if k in ("track_ids", "labels", "masks", "scores")})
    return out


def evaluate_mots(
    gt_frames: Sequence[Mapping] | Mapping[str, Sequence[Mapping]],
    pred_frames_by_tracker: Mapping[str, Sequence[Mapping] | Mapping[str, Sequence[Mapping]]],
    workdir: str | Path,
) -> dict[str, dict[str, dict[str, float]]]:
    """Score trackers against ground truth with TrackEval (MOTSChallenge): HOTA, DetA, AssA, IDF1, MOTA, IDSW.

    ``gt_frames`` and each tracker's frames are per-frame dicts as in :func:`mots_lines` (one
    sequence; a ToyCity ``clip``'s targets are such dicts), or, for several clips, mappings
    ``{clip name: frames}`` with the same names. Files, and TrackEval's printed progress
    (``trackeval.log``), go under ``workdir``.
    Returns ``{tracker: {sequence or "all": {metric: value}}}``: a sequence is a class name for
    one clip, ``"<clip>-<class name>"`` for several, and ``"all"`` TrackEval's combination of
    them all. HOTA, DetA and AssA are averaged over TrackEval's localisation thresholds
    (0.05..0.95), as TrackEval reports them.
    """
    import trackeval

    workdir = Path(workdir)
    several = isinstance(gt_frames, Mapping)
    gt_clips = gt_frames if several else {"": gt_frames}
    pred_clips = {name: clips if several else {"": clips} for name, clips in pred_frames_by_tracker.items()}
    for name, clips in pred_clips.items():
        for clip_name, frames in gt_clips.items():
            if len(clips[clip_name]) != len(frames):
                raise ValueError(f"tracker {name!r} has {len(clips[clip_name])} frames of clip {clip_name!r}, "
                                 f"the ground truth {len(frames)}.")
    sequences, lengths = {}, {}
    for clip_name, frames in gt_clips.items():
        present = set()
        for frame in [*frames, *(f for clips in pred_clips.values() for f in clips[clip_name])]:
            present.update(torch.as_tensor(frame["labels"]).tolist())
        for label in sorted(present):
            seq = f"{clip_name}-{CLASSES[label]}" if several else CLASSES[label]
            sequences[seq], lengths[seq] = (clip_name, label), len(frames)
    if not sequences:
        raise ValueError("neither the ground truth nor any tracker has an object: nothing to evaluate.")
    for seq, (clip_name, label) in sequences.items():
        write_mots(workdir / "gt" / seq / "gt" / "gt.txt", only_class(gt_clips[clip_name], label),
                   class_id=MOTS_CHALLENGE_CLASS_ID)
        for name, clips in pred_clips.items():
            write_mots(workdir / "trackers" / name / "data" / f"{seq}.txt", only_class(clips[clip_name], label),
                       class_id=MOTS_CHALLENGE_CLASS_ID)

    evaluator = trackeval.Evaluator({
        "USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False,
        "DISPLAY_LESS_PROGRESS": True, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False,
        "LOG_ON_ERROR": str(workdir / "trackeval_error.log"),
    })
    dataset = trackeval.datasets.MOTSChallenge({
        "GT_FOLDER": str(workdir / "gt"), "TRACKERS_FOLDER": str(workdir / "trackers"),
        "OUTPUT_FOLDER": str(workdir / "output"), "TRACKERS_TO_EVAL": list(pred_frames_by_tracker),
        "SEQ_INFO": lengths, "SKIP_SPLIT_FOL": True, "PRINT_CONFIG": False,
    })
    quiet = {"PRINT_CONFIG": False}
    metrics = [trackeval.metrics.HOTA(quiet), trackeval.metrics.CLEAR(quiet), trackeval.metrics.Identity(quiet)]
    with open(workdir / "trackeval.log", "w") as log, contextlib.redirect_stdout(log):  # TrackEval prints progress
        results, messages = evaluator.evaluate([dataset], metrics)
    scores = {}
    for name in pred_frames_by_tracker:
        if messages["MOTSChallenge"][name] != "Success":
            raise RuntimeError(f"TrackEval failed on tracker {name!r}: {messages['MOTSChallenge'][name]}")
        per_seq = results["MOTSChallenge"][name]
        scores[name] = {("all" if seq == "COMBINED_SEQ" else seq): summarise(res["pedestrian"])
                        for seq, res in per_seq.items()}
    return scores


def summarise(result: Mapping) -> dict[str, float]:
    """The headline numbers of one TrackEval result (HOTA family averaged over thresholds)."""
    hota, clear, identity = result["HOTA"], result["CLEAR"], result["Identity"]
    return {
        "HOTA": float(np.mean(hota["HOTA"])),
        "DetA": float(np.mean(hota["DetA"])),
        "AssA": float(np.mean(hota["AssA"])),
        "IDF1": float(identity["IDF1"]),
        "MOTA": float(clear["MOTA"]),
        "IDSW": float(clear["IDSW"]),
    }
