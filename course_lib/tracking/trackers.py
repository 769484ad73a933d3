"""Trackers behind one small interface, so that the field's trackers plug into the course's tools.

A tracker, for the course, is anything with ``update(detections) -> list[Track]``: it consumes one
frame's detections (the dict Mask R-CNN returns: ``boxes``, ``labels``, ``scores``, ``masks``)
and returns the tracks to report for that frame (:class:`course_lib.tracking.track.Track`), which
:func:`course_lib.tracking.track.tracks_to_frame` turns into a frame with ``track_ids``. The course's own
:class:`course_lib.tracking.track.Tracker` is one; :class:`BoxmotTracker` wraps the trackers of
`boxmot <https://github.com/mikel-brostrom/boxmot>`_ (ByteTrack, OC-SORT, BoT-SORT), so that all of
them are run, timed and scored by TrackEval the same way.

boxmot's trackers are box trackers: they take an ``N x 6`` array ``[x1, y1, x2, y2, score, class]``
and return ``[x1, y1, x2, y2, id, score, class, detection index]`` per reported track. The box
they return is their Kalman filter's estimate; the adapter reports the *detection's* box and mask
under the track's id instead (the detection index says which), so every tracker is scored on the
same masks and differs only in which detections it reports and under which id.
"""

from __future__ import annotations

import logging
import time
from typing import Mapping, Protocol, Sequence

import numpy as np
import torch

from course_lib.evaluation.mots import evaluate_mots
from course_lib.tracking.mask_rois import masks_to_rois
from course_lib.tracking.track import Track, Tracker, TrackState, tracks_to_frame

#: The boxmot trackers compared in the course: ``name: (boxmot class, settings)``. Settings are
#: boxmot's defaults except where said: class-aware matching (as the course's tracker and the
#: class-aware MOTS evaluation), and BoT-SORT without its two extras, re-identification
#: embeddings (a CNN per detection) and camera-motion compensation (ToyCity's camera is fixed).
BOXMOT_TRACKERS: dict[str, tuple[str, dict]] = {
    "ByteTrack": ("ByteTrack", dict(per_class=True)),
    "OC-SORT": ("OcSort", dict(per_class=True)),
    "BoT-SORT": ("BotSort", dict(per_class=True, use_embeddings=False, use_cmc=False)),
}


class FrameTracker(Protocol):
    """What the course asks of a tracker: one call per frame, in order."""

    def update(self, detections: dict) -> list[Track]: ...


class BoxmotTracker:
    """A boxmot tracker behind the course's interface: ``BoxmotTracker("ByteTrack").update(detections)``.

    Args:
        name: a key of :data:`BOXMOT_TRACKERS`.
        frame_rate: frames per second of the video (ByteTrack and BoT-SORT scale how long a
            lost track is kept by it).
        settings: more keyword arguments for the boxmot tracker (override the defaults).

    ``update`` takes the detections of one frame as :meth:`course_lib.tracking.track.Tracker.update`
    does (masks optional) and returns confirmed tracks carrying the detection's box, mask (in
    its box frame, ``roi_size`` square) and score.
    """

    def __init__(self, name: str, frame_rate: float = 30.0, roi_size: int = 28, **settings) -> None:
        if name not in BOXMOT_TRACKERS:
            raise ValueError(f"unknown boxmot tracker {name!r}: choose one of {', '.join(BOXMOT_TRACKERS)}")
        try:
            import boxmot
        except ImportError as error:
            raise ImportError("BoxmotTracker needs boxmot: pip install --no-deps boxmot==25.0.0 lapx==0.11.1 rich "
                              "(its other dependencies serve its detectors and re-id models, not these trackers)") from error
        class_name, defaults = BOXMOT_TRACKERS[name]
        tracker_class = getattr(boxmot, class_name)  # importing it sets up boxmot's logger
        logging.getLogger("boxmot").setLevel(logging.WARNING)  # which logs every tracker's settings at INFO
        if class_name in ("ByteTrack", "BotSort"):
            defaults = {**defaults, "frame_rate": round(frame_rate)}
        self.name, self.roi_size = name, roi_size
        self.tracker = tracker_class(**{**defaults, **settings})

    def update(self, detections: dict) -> list[Track]:
        boxes = torch.as_tensor(detections["boxes"], dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(detections["labels"]).reshape(-1)
        scores = torch.as_tensor(detections.get("scores", torch.ones(len(boxes))), dtype=torch.float32).reshape(-1)
        # boxmot rejects empty boxes (x2 <= x1 or y2 <= y1), which a detector never returns but
        # jittered ground truth of a one-pixel-wide object can; they are left out.
        valid = ((boxes[:, 2:] > boxes[:, :2]).all(1)).nonzero()[:, 0]
        rows = torch.cat([boxes, scores[:, None], labels[:, None].float()], 1)[valid]
        out = self.tracker.update(rows.numpy().astype(np.float32))
        det_index = valid[torch.from_numpy(out[:, 7].astype(np.int64))]
        rois = [None] * len(out)
        if detections.get("masks") is not None and len(out):
            masks = torch.as_tensor(detections["masks"])
            masks = masks[:, 0] if masks.dim() == 4 else masks
            rois = list(masks_to_rois(masks, boxes[det_index], self.roi_size, rows=det_index))
        return [
            # boxmot counts ids from 0; the course's ids start at 1 (0 reads as "no track" in drawings)
            Track(int(row[4]) + 1, int(labels[d]), boxes[d].double().numpy(), roi, float(scores[d]), state=TrackState.CONFIRMED)
            for row, d, roi in zip(out, det_index.tolist(), rois)
        ]


#: The course's :class:`~course_lib.tracking.track.Tracker` by name: its defaults (the alpha-beta
#: filter) and the same with its Kalman filter.
COURSE_TRACKERS: dict[str, dict] = {"course": {}, "course-kalman": {"motion": "kalman"}}


def make_tracker(name: str, frame_rate: float = 30.0) -> FrameTracker:
    """One of the course's trackers (:data:`COURSE_TRACKERS`) or a boxmot tracker by name."""
    return Tracker(**COURSE_TRACKERS[name]) if name in COURSE_TRACKERS else BoxmotTracker(name, frame_rate=frame_rate)


#: Every tracker :func:`make_tracker` knows, the course's first.
TRACKERS = (*COURSE_TRACKERS, *BOXMOT_TRACKERS)


def compare(
    names: Sequence[str],
    targets: Mapping[str, Sequence[dict]],
    detections: Mapping[str, Sequence[dict]],
    workdir: str,
    frame_rate: float = 30.0,
) -> dict[str, dict[str, float]]:
    """Run each tracker of ``names`` on the same detections of several clips and score them.

    ``targets``, ``detections``: ``{clip name: per-frame dicts}`` (ground truth with ``track_ids``;
    detections as :meth:`course_lib.tracking.track.Tracker.update` takes them). Every tracker starts afresh
    on each clip. The trackers take turns frame by frame, so that a slower or busier moment of
    the machine falls on all of them alike; ``ms_per_frame`` is the median time of ``update``
    alone (for a boxmot tracker, with the adapter's conversions), ``ms_per_frame_mean`` its mean.
    Returns ``{tracker: {HOTA, DetA, AssA, IDF1, MOTA, IDSW, ms_per_frame, ms_per_frame_mean}}``,
    the scores being TrackEval's combination over all clips (:func:`course_lib.evaluation.mots.evaluate_mots`).
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
                start = time.perf_counter()
                tracks = tracker.update(frame)
                seconds[name].append(time.perf_counter() - start)
                tracked[name][clip_name].append(tracks_to_frame(tracks, height, width))
    scores = evaluate_mots({clip: targets[clip] for clip in detections}, tracked, workdir)
    return {name: {**scores[name]["all"], "ms_per_frame": 1e3 * float(np.median(seconds[name])),
                   "ms_per_frame_mean": 1e3 * float(np.mean(seconds[name]))} for name in names}
