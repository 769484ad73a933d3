"""Every tracker of the course by name (:data:`TRACKERS`), behind one small interface.

A tracker, for the course, is anything with ``update(detections) -> list[Track]``: it consumes one
frame's detections (the dict Mask R-CNN returns: ``boxes``, ``labels``, ``scores``, ``masks``)
and returns the tracks to report for that frame (:class:`course_lib.tracking.track.Track`), which
:func:`course_lib.tracking.track.tracks_to_frame` turns into a frame with ``track_ids``. The course's own
:class:`course_lib.tracking.track.Tracker` is one; :class:`BoxmotTracker` wraps the trackers of
`boxmot <https://github.com/mikel-brostrom/boxmot>`_ (ByteTrack, OC-SORT, BoT-SORT), so that all of
them are run, timed and scored by TrackEval the same way
(:func:`course_lib.tracking.track_metrics.compare_trackers`).

boxmot's trackers are box trackers: they take an ``N x 6`` array ``[x1, y1, x2, y2, score, class]``
and return ``[x1, y1, x2, y2, id, score, class, detection index]`` per reported track. The box
they return is their Kalman filter's estimate; the adapter reports the *detection's* box and mask
under the track's id instead (the detection index says which), so every tracker is scored on the
same masks and differs only in which detections it reports and under which id.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import torch

from course_lib.structures.masks import instance_masks
from course_lib.tracking.mask_rois import masks_to_rois
from course_lib.tracking.track import Track, Tracker, TrackState

#: The class of the course's own trackers in :data:`TRACKERS`.
COURSE_CLASS = "Tracker"

#: Every tracker of the course by name: ``name: (class, settings)``, the class being ``"Tracker"``
#: (the course's :class:`~course_lib.tracking.track.Tracker`) or one of boxmot's. The course's four
#: build up the tracker of Week 3: ``none`` gives a new id to every detection in every frame (a
#: detector alone), ``iou`` matches consecutive frames on mask IoU only (no memory across a missed
#: frame, no box-IoU fallback, no motion, no smoothing), ``course`` is the tracker with its defaults
#: (the fixed-gain alpha-beta filter) and ``course-kalman`` the same with its Kalman filter. boxmot's
#: settings are its defaults except class-aware matching (as the course's tracker and the
#: class-aware MOTS evaluation), and BoT-SORT without re-identification embeddings (a CNN per
#: detection) and camera-motion compensation (ToyCity's camera is fixed).
TRACKERS: dict[str, tuple[str, dict]] = {
    "none": (COURSE_CLASS, dict(iou_gate=1.01, box_gate=1.01, min_hits=1, max_age=0, mask_alpha=1.0, box_alpha=1.0, motion="none")),
    "iou": (COURSE_CLASS, dict(box_gate=1.01, min_hits=1, max_age=0, mask_alpha=1.0, box_alpha=1.0, motion="none")),
    "course": (COURSE_CLASS, {}),
    "course-kalman": (COURSE_CLASS, dict(motion="kalman")),
    "ByteTrack": ("ByteTrack", dict(per_class=True)),
    "OC-SORT": ("OcSort", dict(per_class=True)),
    "BoT-SORT": ("BotSort", dict(per_class=True, use_embeddings=False, use_cmc=False)),
}
#: boxmot's trackers among :data:`TRACKERS`.
BOXMOT_TRACKERS = tuple(name for name, (cls, _) in TRACKERS.items() if cls != COURSE_CLASS)
#: The course's tracker taken apart, step by step (Week 3's table on one clip).
ABLATION = ("none", "iou", "course", "course-kalman")
#: The course's two trackers against the field's (``data_scripts/compare_trackers.py``).
AGAINST_THE_FIELD = ("course", "course-kalman", *BOXMOT_TRACKERS)


class FrameTracker(Protocol):
    """What the course asks of a tracker: one call per frame, in order."""

    def update(self, detections: dict) -> list[Track]: ...


class BoxmotTracker:
    """A boxmot tracker behind the course's interface: ``BoxmotTracker("ByteTrack").update(detections)``.

    Args:
        name: one of :data:`BOXMOT_TRACKERS`.
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
        class_name, defaults = TRACKERS[name]
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
            rois = list(masks_to_rois(instance_masks(detections["masks"]), boxes[det_index], self.roi_size, rows=det_index))
        return [
            # boxmot counts ids from 0; the course's ids start at 1 (0 reads as "no track" in drawings)
            Track(int(row[4]) + 1, int(labels[d]), boxes[d].double().numpy(), roi, float(scores[d]), state=TrackState.CONFIRMED)
            for row, d, roi in zip(out, det_index.tolist(), rois)
        ]


def make_tracker(name: str, frame_rate: float = 30.0) -> FrameTracker:
    """A fresh tracker of :data:`TRACKERS` by name (``frame_rate``: frames per second, for boxmot's)."""
    if name not in TRACKERS:
        raise ValueError(f"unknown tracker {name!r}: choose one of {', '.join(TRACKERS)}")
    class_name, settings = TRACKERS[name]
    return Tracker(**settings) if class_name == COURSE_CLASS else BoxmotTracker(name, frame_rate=frame_rate)
