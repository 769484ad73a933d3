"""Online instance tracking: give each frame's detections the ids of the objects they continue.

This is "tracking by detection" in the style of SORT (Bewley et al., 2016), applied to masks. For
every new frame:

1. predict where each live track is now (a constant-velocity model on its box: a fixed-gain
   alpha-beta filter by default, or a Kalman filter, :mod:`course_lib.tracking.kalman`),
2. build a cost matrix ``1 - IoU`` between tracks and detections (mask IoU, box IoU when there are
   no masks); pairs of different classes or with IoU below a gate are forbidden,
3. solve the assignment with the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``),
4. update matched tracks, age unmatched ones, and start a tentative track per unmatched detection.

A track's life: ``TENTATIVE`` until it has been matched ``min_hits`` times (so one-frame false
positives never get an id), then ``CONFIRMED``; a confirmed track that misses a frame becomes
``LOST`` and stays matchable for ``max_age`` frames (re-identification after a short occlusion),
after which it is ``REMOVED``.

Masks live in each track's own box frame as an ``M x M`` probability map, the representation Mask
R-CNN's mask head predicts. That makes temporal smoothing motion-compensated for free: when the box
moves or grows, the mask moves and grows with it, so an exponential moving average (EMA) of the
mask over frames does not smear a moving object. It also keeps the tracker cheap: nothing it does
per frame touches a full-resolution image except the final paste.
"""

from __future__ import annotations

import colorsys
import enum
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from course_lib.structures.masks import instance_masks
from course_lib.structures.matching import match_pairs
from course_lib.tracking.kalman import BoxKalman
from course_lib.tracking.mask_rois import FORBIDDEN, iou_cost_matrix, masks_to_rois, paste_rois

#: Motion models of :class:`Tracker`: none (a track waits where it was seen), the fixed-gain
#: alpha-beta filter on the box centre, or a Kalman filter on centre, size and their rates.
MOTIONS = ("none", "alpha-beta", "kalman")

# --------------------------------------------------------------------------- matching


def assign(cost: Tensor) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Minimum-cost one-to-one assignment: ``(matches [(row, col)], unmatched rows, unmatched cols)``.

    The Hungarian algorithm may still pair a row with a :data:`FORBIDDEN` column when nothing
    better is left; such pairs are dropped and both sides count as unmatched.
    """
    # Maximising -cost is scipy's minimisation of cost (it negates internally); every allowed cost
    # is 1 - IoU <= 1, so the gate 1 - FORBIDDEN keeps exactly the pairs not FORBIDDEN.
    matches = match_pairs(-cost, threshold=1 - FORBIDDEN)
    matched_rows = {r for r, _ in matches}
    matched_cols = {c for _, c in matches}
    unmatched_rows = [r for r in range(cost.shape[0]) if r not in matched_rows]
    unmatched_cols = [c for c in range(cost.shape[1]) if c not in matched_cols]
    return matches, unmatched_rows, unmatched_cols


def track_color(track_id: int) -> tuple[int, int, int]:
    """A stable, distinct RGB colour per id: hues stepped by the golden ratio so neighbours differ."""
    hue = (track_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


# --------------------------------------------------------------------------- tracks


class TrackState(enum.Enum):
    TENTATIVE = "tentative"  # seen, but not yet min_hits times: no id is reported
    CONFIRMED = "confirmed"  # matched in the latest frame(s)
    LOST = "lost"  # confirmed, missed recently; still matchable for max_age frames
    REMOVED = "removed"  # gone for good


@dataclass(eq=False)
class Track:
    """One object followed through time.

    Boxes are XYXY pixels held as small NumPy arrays (per-track arithmetic on 4 numbers costs
    microseconds in NumPy and ~10x more in torch); the mask is a torch ``[M, M]`` map or None.
    """

    track_id: int
    label: int
    box: np.ndarray  # [4] smoothed box
    roi: Tensor | None  # [M, M] smoothed mask probability in the box's frame
    score: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # [4] px per frame (alpha-beta motion)
    kalman: BoxKalman | None = None  # the Kalman state after the last match (Kalman motion)
    state: TrackState = TrackState.TENTATIVE
    hits: int = 1  # frames in which it was matched
    misses: int = 0  # consecutive frames without a match
    history: list[tuple[int, TrackState]] = field(default_factory=list)  # (frame, state) per frame

    def predicted_box(self) -> np.ndarray:
        """Where the box should be in the coming frame under constant velocity: ``[4]``.

        Boxes clipped at the image edge shrink as their object leaves, so the extrapolated box is
        kept at least one pixel wide and high rather than turning inside out.
        """
        if self.kalman is not None:
            return self.kalman.predict(self.misses + 1).box()
        box = self.box + self.velocity * (self.misses + 1)
        box[2:] = np.maximum(box[2:], box[:2] + 1)
        return box

    @property
    def color(self) -> tuple[int, int, int]:
        return track_color(self.track_id)


class Tracker:
    """Online multi-object tracker for instance masks (or boxes). Call :meth:`update` once per frame.

    Args:
        iou_gate: smallest IoU at which a detection may continue a track.
        box_gate: smallest box IoU at which a detection may continue a track whatever its mask
            IoU (masks only; see :func:`iou_cost_matrix`).
        min_hits: matches needed before a track is confirmed and reported.
        max_age: frames a lost track stays matchable (0: no re-identification).
        min_score: detections scoring below this are ignored.
        mask_alpha, box_alpha: weight of the new observation in the EMA of a confirmed track's
            mask and box (1.0: no smoothing). With ``"alpha-beta"`` motion ``box_alpha`` is both
            gains of the filter (position and velocity); ``"kalman"`` motion predicts with its own
            gains and reports the same EMA of the detection and its prediction.
        motion: one of :data:`MOTIONS`: ``"none"`` (a track waits where it was seen),
            ``"alpha-beta"`` (constant velocity of the box centre, fixed gains) or ``"kalman"``
            (:class:`course_lib.tracking.kalman.BoxKalman`: centre, size and their rates, with covariance).
        roi_size: side of the box-frame mask each track keeps (28, as Mask R-CNN predicts them).

    ``Tracker(iou_gate=1.01, box_gate=1.01, min_hits=1)`` gives every detection a new id each frame
    (no tracking); ``Tracker(box_gate=1.01, min_hits=1, max_age=0, mask_alpha=1, box_alpha=1, motion="none")``
    is plain mask-IoU matching.
    """

    def __init__(
        self,
        iou_gate: float = 0.1,
        box_gate: float = 0.3,
        min_hits: int = 2,
        max_age: int = 5,
        min_score: float = 0.5,
        mask_alpha: float = 0.6,
        box_alpha: float = 0.8,
        motion: str = "alpha-beta",
        roi_size: int = 28,
    ) -> None:
        if min_hits < 1 or max_age < 0 or not (0 < mask_alpha <= 1 and 0 < box_alpha <= 1):
            raise ValueError("need min_hits >= 1, max_age >= 0 and 0 < mask_alpha, box_alpha <= 1")
        if motion not in MOTIONS:
            raise ValueError(f"unknown motion {motion!r}: choose one of {', '.join(MOTIONS)}")
        self.iou_gate, self.box_gate, self.min_hits, self.max_age = iou_gate, box_gate, min_hits, max_age
        self.min_score = min_score
        self.mask_alpha, self.box_alpha, self.motion, self.roi_size = mask_alpha, box_alpha, motion, roi_size
        self.tracks: list[Track] = []  # every track not yet removed
        self.frame_index = -1
        self._next_id = 1

    def update(self, detections: dict) -> list[Track]:
        """Consume one frame's detections; return the tracks to report for this frame.

        ``detections``: ``boxes [N, 4]`` XYXY, ``labels [N]``, optional ``scores [N]`` and ``masks``
        (``[N, H, W]`` or Mask R-CNN's ``[N, 1, H, W]``, binary or probabilities); tensors or arrays.
        Reported: confirmed tracks matched in this frame, plus, during the first ``min_hits``
        frames of a stream, tentative ones (otherwise the first frames would report nothing).
        """
        self.frame_index += 1
        boxes, labels, scores, rois = self._prepare(detections)
        predicted = np.stack([t.predicted_box() for t in self.tracks]) if self.tracks else np.zeros((0, 4))
        if self.tracks:
            cost, _ = iou_cost_matrix(
                torch.from_numpy(predicted).float(),
                torch.tensor([t.label for t in self.tracks]),
                boxes,
                labels,
                torch.stack([t.roi for t in self.tracks]) if rois is not None and self.tracks[0].roi is not None else None,
                rois,
                self.iou_gate,
                self.box_gate,
            )
            matches, unmatched_tracks, unmatched_dets = assign(cost)
        else:
            matches, unmatched_tracks, unmatched_dets = [], [], list(range(len(boxes)))
        boxes_np = boxes.double().numpy()
        for t, d in matches:
            self._continue(self.tracks[t], predicted[t], boxes_np[d], float(scores[d]), None if rois is None else rois[d])
        for t in unmatched_tracks:
            self._miss(self.tracks[t])
        for d in unmatched_dets:
            self._start(boxes_np[d], int(labels[d]), float(scores[d]), None if rois is None else rois[d])
        for track in self.tracks:
            track.history.append((self.frame_index, track.state))
        self.tracks = [t for t in self.tracks if t.state is not TrackState.REMOVED]
        warming_up = self.frame_index < self.min_hits
        return [
            t
            for t in self.tracks
            if t.misses == 0 and (t.state is TrackState.CONFIRMED or (warming_up and t.state is TrackState.TENTATIVE))
        ]

    def _prepare(self, detections: dict) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Tensors of the kept detections; masks become box-frame rois ``[N, M, M]``."""
        boxes = torch.as_tensor(detections["boxes"], dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(detections["labels"], dtype=torch.int64).reshape(-1)
        scores = torch.as_tensor(detections.get("scores", torch.ones(len(boxes))), dtype=torch.float32).reshape(-1)
        if not len(boxes) == len(labels) == len(scores):
            raise ValueError(f"detections disagree on their count: {len(boxes)} boxes, {len(labels)} labels, {len(scores)} scores")
        keep = scores >= self.min_score
        rois = None
        if detections.get("masks") is not None:
            masks = instance_masks(detections["masks"])
            if len(masks) != len(boxes):
                raise ValueError(f"{len(masks)} masks for {len(boxes)} boxes: give one mask per detection")
            rois = masks_to_rois(masks, boxes[keep], self.roi_size, rows=keep.nonzero()[:, 0])
        return boxes[keep], labels[keep], scores[keep], rois

    def _start(self, box: np.ndarray, label: int, score: float, roi: Tensor | None) -> None:
        track = Track(self._next_id, label, box.copy(), roi, score)
        if self.motion == "kalman":
            track.kalman = BoxKalman.start(box)
        self._next_id += 1
        if self.min_hits <= 1:
            track.state = TrackState.CONFIRMED
        self.tracks.append(track)

    def _continue(self, track: Track, predicted: np.ndarray, box: np.ndarray, score: float, roi: Tensor | None) -> None:
        """A matched track: move it to the detection (``box``), smoothing once it is confirmed."""
        gap = track.misses + 1  # frames since the track was last seen
        if track.kalman is not None:
            track.kalman = track.kalman.predict(gap).update(box)
        elif self.motion == "alpha-beta":
            # The velocity of the box's centre, given to both corners: the corners of an
            # articulated object swing with its legs or pedals (a walker's box widens and narrows
            # every stride), and extrapolating each corner on its own turned that swing into
            # boxes that collapsed or flipped within a few frames; the centre moves steadily.
            observed = (box - track.box) / gap
            centre = (observed[:2] + observed[2:]) / 2
            observed = np.concatenate([centre, centre])
            track.velocity = observed if track.hits == 1 else self.box_alpha * observed + (1 - self.box_alpha) * track.velocity
        if track.state is TrackState.TENTATIVE:
            track.box, track.roi = box.copy(), roi
        else:
            # EMA towards the detection, starting from the motion prediction (either filter's) so a
            # moving object does not lag behind. The Kalman filter's own estimate lags more: its
            # gain settles near 2/3, and a box a pixel behind costs a small object's mask IoU.
            # The roi needs no warping: it is expressed in the box's frame.
            track.box = self.box_alpha * box + (1 - self.box_alpha) * predicted
            if roi is not None and track.roi is not None:
                track.roi = torch.lerp(track.roi, roi, self.mask_alpha)  # alpha * new + (1 - alpha) * old
        track.score = score
        track.hits += 1
        track.misses = 0
        if track.state is TrackState.LOST or track.hits >= self.min_hits:
            track.state = TrackState.CONFIRMED

    def _miss(self, track: Track) -> None:
        """An unmatched track: a tentative one is dropped, a confirmed one lost, then removed."""
        track.misses += 1
        if track.state is TrackState.TENTATIVE or track.misses > self.max_age:
            track.state = TrackState.REMOVED
        else:
            track.state = TrackState.LOST


def tracks_to_frame(tracks: list[Track], height: int, width: int) -> dict[str, Tensor]:
    """The reported tracks of one frame as a detection-style dict with ``track_ids``.

    Keys: ``boxes [K, 4]`` float, ``labels [K]``, ``scores [K]``, ``track_ids [K]`` int64 and, when
    the tracks have masks, ``masks [K, H, W]`` uint8 (pasted from the box-frame rois).
    """
    frame = {
        "boxes": torch.as_tensor(np.stack([t.box for t in tracks]), dtype=torch.float32) if tracks else torch.zeros(0, 4),
        "labels": torch.tensor([t.label for t in tracks], dtype=torch.int64),
        "scores": torch.tensor([t.score for t in tracks], dtype=torch.float32),
        "track_ids": torch.tensor([t.track_id for t in tracks], dtype=torch.int64),
    }
    if tracks and tracks[0].roi is not None:
        frame["masks"] = paste_rois(torch.stack([t.roi for t in tracks]), frame["boxes"], height, width)
    elif not tracks:
        frame["masks"] = torch.zeros(0, height, width, dtype=torch.uint8)
    return frame
