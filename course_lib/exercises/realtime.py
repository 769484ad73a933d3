"""Exercises of Weeks 3 and 4 after the speed chapters: tracking, video, and the portfolio's numbers."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
from torchvision.utils import draw_segmentation_masks

from course_lib.exercises.core import Exercise, Mistake, register
from course_lib.exercises.generate import random_boxes, seeded
from course_lib.results import load_results
from course_lib.tracking.track import FORBIDDEN, Tracker, assign

# --- tracking ---------------------------------------------------------------------------------------


def gated_matches(iou, gate):
    """Sorted (track, detection) pairs: gate first, then the Hungarian assignment."""
    # Written out, not course_lib.tracking.track.assign: this is the solution the learner writes.
    from scipy.optimize import linear_sum_assignment

    allowed = iou >= gate
    cost = torch.where(allowed, 1 - iou, torch.full_like(iou, 1e6))  # a pair under the gate: forbidden
    rows, cols = linear_sum_assignment(cost.numpy())
    return sorted((int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c])


def _tracker_matches(iou, gate):
    """The chapter's tracker: ``assign`` on the cost ``1 - IoU`` with the pairs under the gate FORBIDDEN."""
    return sorted(assign(torch.where(iou >= gate, 1 - iou, torch.full_like(iou, FORBIDDEN)))[0])


def _iou_matrix_cases():
    g = seeded(7)
    greedy_trap = torch.tensor([[0.9, 0.8], [0.85, 0.1]], dtype=torch.float64)  # greedy takes (0, 0) and strands track 1
    return [(greedy_trap, 0.3), (torch.rand(4, 5, generator=g, dtype=torch.float64), 0.3), (torch.rand(6, 4, generator=g, dtype=torch.float64) ** 2, 0.2),
            (torch.tensor([[0.05, 0.6], [0.2, 0.1]], dtype=torch.float64), 0.3)]


def _iou_matrix_generated():
    f64 = torch.float64
    edges = [(torch.zeros(0, 3, dtype=f64), 0.3), (torch.zeros(2, 0, dtype=f64), 0.3),  # no detections or no tracks
             (torch.tensor([[0.5]], dtype=f64), 0.5), (torch.tensor([[0.25]], dtype=f64), 0.3),  # one pair, at and under the gate
             (torch.tensor([[0.9, 0.25], [0.8, 0.0]], dtype=f64), 0.3),  # gate first: (0, 0); assigning first would give (1, 0)
             (torch.tensor([[0.3, 0.29], [0.31, 0.3]], dtype=f64), 0.3),  # ties at the gate
             (torch.zeros(3, 3, dtype=f64), 0.1), (torch.eye(4, dtype=f64), 0.5)]
    g = seeded(20)
    random = [(torch.rand(t, d, generator=g, dtype=f64) ** 2, float(gate)) for (t, d), gate in
              zip(torch.randint(1, 9, (25, 2), generator=g).tolist(), torch.rand(25, generator=g).mul(0.6).tolist())]
    return edges + random


def _greedy(iou, gate):
    pairs, used_r, used_c = [], set(), set()
    for flat in iou.flatten().argsort(descending=True).tolist():
        r, c = divmod(flat, iou.shape[1])
        if r not in used_r and c not in used_c and iou[r, c] >= gate:
            pairs.append((r, c))
            used_r.add(r)
            used_c.add(c)
    return sorted(pairs)


def _assign_then_gate(iou, gate, allowed=lambda v, gate: v >= gate):
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(iou.numpy(), maximize=True)
    return sorted((int(r), int(c)) for r, c in zip(rows, cols) if allowed(iou[r, c], gate))


register(Exercise(
    name="gated_matches", chapter="book/week3/03_tracking", title="Gated Hungarian matching", solution=gated_matches,
    cases=_iou_matrix_cases, generated=_iou_matrix_generated, expected=_tracker_matches,
    agrees_with="the chapter's tracker (course_lib.tracking.track.assign: scipy's linear_sum_assignment, gate first)",
    hint="gate first: cost = 1 - IoU where IoU >= gate, a huge cost (1e6) elsewhere; scipy.optimize.linear_sum_assignment(cost); keep the pairs whose IoU >= gate; sorted",
    mistakes=(
        Mistake(_greedy, "greedy best-pair-first is not optimal: the Hungarian algorithm (linear_sum_assignment) finds the best assignment"),
        Mistake(lambda iou, gate: _assign_then_gate(iou, -1.0), "apply the gate: a pair with IoU below it is no match, both sides stay unmatched"),
        Mistake(lambda iou, gate: sorted((r, int(iou[r].argmax())) for r in range(iou.shape[0]) if iou[r].max() >= gate),
                "one-to-one: two tracks may not take the same detection"),
        Mistake(_assign_then_gate, "gate BEFORE assigning, as the tracker does: a pair under the gate must not take a track or detection that an allowed pair could have"),
        Mistake(lambda iou, gate: gated_matches(iou, gate + 1e-9) if iou.numel() else [], "the gate is inclusive: a pair with IoU exactly equal to the gate may match (IoU >= gate)"),
    ),
))


def track_states(matched, min_hits, max_age):
    """A track's state in each frame from its birth, as the Tracker sets it."""
    state = "confirmed" if min_hits <= 1 else "tentative"
    hits, misses = 1, 0  # the birth frame is the first hit
    states = [state]
    for hit in matched:
        if state == "removed":
            pass  # removed is final
        elif hit:
            hits, misses = hits + 1, 0
            if state == "lost" or hits >= min_hits:
                state = "confirmed"
        else:
            misses += 1
            gone = state == "tentative" or misses > max_age
            state = "removed" if gone else "lost"
        states.append(state)
    return states


def _tracker_states(matched, min_hits, max_age):
    """The chapter's Tracker itself, fed one box at birth and then the same box (a hit) or nothing (a miss)."""
    tracker = Tracker(min_hits=min_hits, max_age=max_age, motion="none")
    box = {"boxes": torch.tensor([[10.0, 10, 50, 90]]), "labels": torch.tensor([1])}
    none = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    tracker.update(box)
    track = tracker.tracks[0]
    for hit in matched:
        if track.state.value != "removed":
            tracker.update(box if hit else none)
    states = [state.value for _, state in track.history]
    return states + ["removed"] * (len(matched) + 1 - len(states))


def _track_generated():
    edges = [([], 3, 2), ([], 1, 0), ([False], 1, 0), ([False], 2, 5), ([True], 2, 0), ([True, False], 2, 0), ([True, False, True], 2, 1),
             ([True, True, False, False, False, True], 3, 2), ([True, False, False, True], 2, 2), ([False, True, True], 1, 1)]
    rng = np.random.default_rng(21)
    random = [([bool(h) for h in rng.random(int(n)) < p], int(mh), int(ma))
              for n, p, mh, ma in zip(rng.integers(1, 15, 25), rng.uniform(0.3, 0.9, 25), rng.integers(1, 4, 25), rng.integers(0, 4, 25))]
    return edges + random


register(Exercise(
    name="track_states", chapter="book/week3/03_tracking", title="The life of a track", solution=track_states,
    cases=lambda: [([True, True, False, False, True], 3, 2), ([False, True], 2, 5), ([True, False, False, False, True], 2, 2), ([True, True, True], 1, 0)],
    generated=_track_generated, expected=_tracker_states, agrees_with="the chapter's Tracker (course_lib.tracking.track), driven frame by frame",
    hint="born tentative (confirmed if min_hits <= 1), the birth counting as the first hit; a hit confirms once hits >= min_hits (a lost track at once); "
         "a miss removes a tentative track, otherwise makes it lost, and removes it once its misses in a row exceed max_age; removed is final",
    mistakes=(
        Mistake(lambda m, h, a: track_states(m, 1, a), "a new track stays tentative until it has been matched min_hits times"),
        Mistake(lambda m, h, a: [("lost" if s == "removed" and "confirmed" not in track_states(m, h, a)[: i + 1] else s) for i, s in enumerate(track_states(m, h, a))],
                "a TENTATIVE track that misses a frame is removed at once: it never proved to be an object"),
        Mistake(lambda m, h, a: track_states(m, h, a + 1), "a lost track is removed once its misses in a row EXCEED max_age (misses > max_age)"),
        Mistake(lambda m, h, a: track_states(m, h, a)[1:], "the list starts with the birth frame's state: len(matched) + 1 states"),
        Mistake(lambda m, h, a: track_states([False] + list(m), h, a)[1:] if h > 1 else track_states(m, h, a), "the birth frame is the track's first hit: count it"),
    ),
))


# --- video ------------------------------------------------------------------------------------------


def overlay(image, mask, colour, alpha):
    """uint8 [3, H, W] image with ``colour`` blended over ``mask`` [H, W]."""
    out = image.clone().float()
    tint = torch.tensor(colour, dtype=torch.float32)[:, None]
    out[:, mask] = (1 - alpha) * out[:, mask] + alpha * tint
    return out.to(torch.uint8)


def _overlay_case(g, h, w, alpha, fill=None):
    mask = torch.rand(h, w, generator=g) > 0.5 if fill is None else torch.full((h, w), fill)
    return (torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8), mask, (255, 40, 0), alpha)


register(Exercise(
    name="overlay", chapter="book/week3/04_video_demo", title="Blend a mask into a frame", solution=overlay,
    cases=lambda: [_overlay_case(seeded(8), h, w, alpha) for h, w, alpha in [(6, 8, 0.5), (5, 5, 0.8), (4, 7, 0.3)]],
    generated=lambda: [_overlay_case(seeded(22), 3, 4, 0.5, fill=False), _overlay_case(seeded(23), 3, 4, 0.4, fill=True), _overlay_case(seeded(24), 1, 1, 0.0),
                       _overlay_case(seeded(25), 2, 9, 1.0)] + [_overlay_case(seeded(60 + k), h, w, a) for k, (h, w, a) in enumerate([(16, 12, 0.7), (7, 3, 0.25), (9, 9, 0.9), (2, 30, 0.6)])],
    expected=lambda image, mask, colour, alpha: draw_segmentation_masks(image, mask, alpha=alpha, colors=[colour]),
    agrees_with="torchvision.utils.draw_segmentation_masks", atol=1.0,
    hint="inside the mask: (1 - alpha) * pixel + alpha * colour; outside: the pixel unchanged; back to uint8",
    mistakes=(
        Mistake(lambda image, mask, colour, alpha: overlay(image, mask, colour, 1 - alpha), "alpha is the opacity of the COLOUR: alpha * colour + (1 - alpha) * pixel"),
        Mistake(lambda image, mask, colour, alpha: ((1 - alpha) * image.float() + alpha * torch.tensor(colour, dtype=torch.float32)[:, None, None]).to(torch.uint8),
                "tint only the pixels inside the mask; the rest of the frame stays as it was"),
        Mistake(lambda image, mask, colour, alpha: overlay(image, mask, colour[::-1], alpha), "the colour is (R, G, B) in channel order 0, 1, 2: OpenCV's BGR order is reversed"),
    ),
))


def kept_frames(num_frames, source_fps, target_fps):
    """Indices of the frames that play at ``target_fps`` without drift."""
    step = source_fps / target_fps
    return [i for i in range(num_frames)
            if i == 0 or math.floor(i / step) != math.floor((i - 1) / step)]


def _exact_kept_frames(num_frames, source_fps, target_fps):
    """Independent truth in exact fractions: output frame k shows source frame ceil(k * source / target), the first at or after its time."""
    step = Fraction(str(source_fps)) / Fraction(str(target_fps))
    due = range(math.ceil(num_frames / step) + 1)  # every output frame due before the source runs out
    return sorted({math.ceil(k * step) for k in due if math.ceil(k * step) < num_frames})


register(Exercise(
    name="kept_frames", chapter="book/week3/04_video_demo", title="Which frames to process", solution=kept_frames,
    cases=lambda: [(25, 25, 9), (30, 30, 10), (25, 25, 10), (24, 30, 12), (13, 29.97, 15)],
    generated=lambda: [(0, 30, 10), (1, 30, 10), (10, 30, 30), (10, 25, 50), (12, 12.5, 30), (31, 30, 7), (50, 60, 25), (40, 12.5, 5), (17, 24, 23), (100, 30, 1)],
    expected=_exact_kept_frames, agrees_with="the exact rule in fractions: output frame k shows source frame ceil(k * source / target)",
    hint="output frame k, at time k / target, shows the first source frame at or after it: ceil(k * source / target); equivalently keep frame i when floor(i * target / source) steps up (frame 0 always)",
    mistakes=(
        Mistake(lambda n, s, t: list(range(0, n, int(s // t))), "stepping by int(source / target) drifts when the rates do not divide (25 -> 10 fps keeps every 2nd frame, 12.5 fps)"),
        Mistake(lambda n, s, t: list(range(0, n, round(s / t))), "rounding the step drifts too: keep frame i when floor(i * target / source) steps up"),
        Mistake(lambda n, s, t: sorted({math.floor(k * s / t) for k in range(math.ceil(n * t / s) + 1) if math.floor(k * s / t) < n}),
                "the task's convention is the first frame AT OR AFTER each output time, ceil(k * source / target), not the last one before it"),
    ),
))


# --- portfolio --------------------------------------------------------------------------------------


def overall_speedup(stages_ms, stage, factor):
    """Speed-up of the whole image when ``stage`` alone runs ``factor`` times faster."""
    total = sum(stages_ms.values())
    faster = total - stages_ms[stage] + stages_ms[stage] / factor
    return total / faster


def _speedup_cases():
    variants = load_results("bench_cpu.json")["variants"]
    return [(variants[0]["stages_ms"], "backbone", 2.0), (variants[0]["stages_ms"], "mask_head", 4.0), (variants[-1]["stages_ms"], "paste", 10.0)]


def _speedup_generated():
    edges = [({"a": 10.0, "b": 30.0}, "a", 1.0), ({"only": 8.0}, "only", 3.0), ({"a": 1.0, "b": 99.0}, "a", 1e9), ({"a": 0.0, "b": 5.0}, "a", 2.0),
             ({"a": 40.0, "b": 40.0, "c": 20.0}, "c", 0.5)]  # no gain, one stage, the limit, a free stage, a slow-down
    rng = np.random.default_rng(57)
    stages = ["transform", "backbone", "rpn", "box_head", "mask_head", "paste"]
    random = [(dict(zip(stages, rng.uniform(0.1, 40, 6).round(3).tolist())), str(rng.choice(stages)), float(rng.choice([1.5, 2, 4, 10, 100]))) for _ in range(10)]
    return edges + random


register(Exercise(
    name="overall_speedup", chapter="book/week4/02_benchmarks", title="What one faster stage buys (Amdahl's law)", solution=overall_speedup,
    cases=_speedup_cases,
    generated=_speedup_generated,
    agrees_with="the reference solution (on the committed bench_cpu.json)",
    hint="new total = total - t_stage + t_stage / factor; speed-up = old total / new total (Amdahl's law)",
    mistakes=(
        Mistake(lambda s, stage, f: f, "only one stage gets faster: the other stages keep their time, so the whole image speeds up less than `factor`"),
        Mistake(lambda s, stage, f: sum(s.values()) - s[stage] + s[stage] / f, "that is the new time in ms: the speed-up is the old total divided by it"),
        Mistake(lambda s, stage, f: 1 + (f - 1) * s[stage] / sum(s.values()), "the saving is t_stage - t_stage / factor; divide the old total by the new total, not a share times the factor"),
    ),
))


def responsible_cell(box, image_size, grid):
    """(row, column) of the grid x grid YOLO cell holding the box centre."""
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    row = min(grid - 1, int(centre_y / image_size[0] * grid))
    column = min(grid - 1, int(centre_x / image_size[1] * grid))
    return row, column


def _cell_by_borders(box, image_size, grid):
    """Independent truth: how many inner cell borders lie at or before the centre, per axis."""
    centre = ((box[1] + box[3]) / 2, (box[0] + box[2]) / 2)
    return tuple(int(np.searchsorted(np.arange(1, grid) * side / grid, c, side="right")) for c, side in zip(centre, image_size))


register(Exercise(
    name="responsible_cell", chapter="book/week4/03_yolo_vs_maskrcnn", title="Which YOLO cell is responsible?", solution=responsible_cell,
    cases=lambda: [((10.0, 20.0, 50.0, 60.0), (128, 256), 8), ((200.0, 10.0, 256.0, 40.0), (128, 256), 4), ((0.0, 100.0, 30.0, 128.0), (128, 256), 13), ((60.0, 60.0, 70.0, 64.0), (128, 128), 2)],
    expected=_cell_by_borders, agrees_with="the cell borders k * H / S searched with np.searchsorted",
    generated=lambda: [((0.0, 0.0, 64.0, 64.0), (128, 128), 2), ((96.0, 0.0, 160.0, 32.0), (128, 256), 4), ((250.0, 120.0, 256.0, 128.0), (128, 256), 7),
                       ((0.0, 0.0, 2.0, 2.0), (128, 256), 1), ((200.0, 0.0, 256.0, 128.0), (128, 256), 3), ((31.0, 63.0, 33.0, 65.0), (128, 128), 4),
                       ((256.0, 128.0, 256.0, 128.0), (128, 256), 4)]  # centres on cell borders and on the image's corner
    + [(tuple(box), (128, 256), int(s)) for box, s in zip(random_boxes(12, seeded(58), 200, 56).clamp(max=256).tolist(), torch.randint(1, 14, (12,), generator=seeded(59)))],
    hint="the centre ((x1 + x2) / 2, (y1 + y2) / 2) decides; row = floor(cy / H * S), column = floor(cx / W * S), at most S - 1 (a centre on a cell border belongs to the cell after it)",
    mistakes=(
        Mistake(lambda b, size, s: responsible_cell(b, size, s)[::-1], "rows go down the image (y), columns across (x): return (row, column)"),
        Mistake(lambda b, size, s: (min(s - 1, int(b[1] / size[0] * s)), min(s - 1, int(b[0] / size[1] * s))), "the cell holding the box's CENTRE is responsible, not the one holding its corner"),
        Mistake(lambda b, size, s: (min(s - 1, round((b[1] + b[3]) / 2 / size[0] * s)), min(s - 1, round((b[0] + b[2]) / 2 / size[1] * s))),
                "floor, not round: cell k covers [k, k + 1) * H / S"),
        Mistake(lambda b, size, s: (int((b[1] + b[3]) / 2 / size[0] * s), int((b[0] + b[2]) / 2 / size[1] * s)),
                "a centre on the image's bottom or right edge gives index S: clamp to the last cell, S - 1"),
    ),
))


# --- the Kalman filter (tracking) -------------------------------------------------------------------


def kalman_step(mean, covariance, z, q, r):
    """One frame of a 1-D constant-velocity Kalman filter: predict, then update with the measurement ``z``."""
    motion, observe = np.array([[1.0, 1.0], [0.0, 1.0]]), np.array([[1.0, 0.0]])
    mean = motion @ np.asarray(mean, dtype=float)
    covariance = motion @ np.asarray(covariance, dtype=float) @ motion.T + np.diag(q)
    gain = covariance @ observe.T / (observe @ covariance @ observe.T + r)  # [2, 1]
    mean = mean + gain[:, 0] * (z - mean[0])
    return {"mean": mean, "covariance": (np.eye(2) - gain @ observe) @ covariance}


def _kalman_cases():
    rng = np.random.default_rng(7)
    cases = [((0.0, 1.0), np.diag([4.0, 1.0]), 1.5, (0.25, 0.01), 1.0)]
    for _ in range(3):
        spread = rng.uniform(0.1, 3.0, 2)
        correlation = rng.uniform(-0.5, 0.5) * spread[0] * spread[1]
        covariance = np.array([[spread[0] ** 2, correlation], [correlation, spread[1] ** 2]])
        cases.append((tuple(rng.normal(0, 5, 2)), covariance, float(rng.normal(0, 5)), tuple(rng.uniform(0.01, 1.0, 2)),
                      float(rng.uniform(0.1, 4.0))))
    return cases


def _kalman_generated():
    """Edges (a certain state, a measurement on the prediction, a distrusted and a trusted sensor), then seeded random."""
    certain, prior = np.zeros((2, 2)), np.diag([4.0, 1.0])
    edges = [((3.0, 2.0), certain, 9.0, (0.0, 0.0), 1.0),  # nothing uncertain: the gain is 0, the prediction stays
             ((3.0, 2.0), prior, 5.0, (0.25, 0.01), 1.0),  # z on the predicted position: the mean is the prediction
             ((0.0, 1.0), prior, 50.0, (0.25, 0.01), 1e9),  # a sensor not trusted at all: almost no correction
             ((0.0, 1.0), prior, 50.0, (0.25, 0.01), 1e-9),  # a sensor trusted fully: the position becomes z
             ((-7.5, 0.0), np.diag([0.0, 9.0]), -7.5, (0.0, 0.5), 2.0)]  # only the velocity is uncertain
    rng = np.random.default_rng(8)
    random = [(tuple(rng.normal(0, 20, 2)), np.diag(rng.uniform(0.0, 10.0, 2)), float(rng.normal(0, 20)),
               tuple(rng.uniform(0.0, 2.0, 2)), float(rng.uniform(0.05, 10.0))) for _ in range(10)]
    return edges + random


register(Exercise(
    name="kalman_step", chapter="book/week3/03_tracking", title="One step of a Kalman filter", solution=kalman_step,
    cases=_kalman_cases, generated=_kalman_generated, agrees_with="the reference solution (a test checks it against filterpy's KalmanFilter)",
    hint="predict: x = F x, P = F P F^T + Q with F = [[1, 1], [0, 1]]; update: K = P H^T / (H P H^T + r) with H = [1, 0], "
         "x = x + K (z - H x), P = (I - K H) P; return {'mean': x, 'covariance': P}",
    mistakes=(
        Mistake(lambda m, p, z, q, r: kalman_step(m, p, z, (0.0, 0.0), r),
                "the prediction adds the process noise Q to the covariance: unseen motion makes the filter less sure"),
        Mistake(lambda m, p, z, q, r: {**kalman_step(m, p, z, q, r), "covariance": np.asarray(p, dtype=float)},
                "the update shrinks the covariance, P = (I - K H) P, with the predicted P"),
        Mistake(lambda m, p, z, q, r: kalman_step(m, p, z, q, 0.0),
                "the gain divides by H P H^T + r: without the measurement noise r the filter copies every detection"),
    ),
))
