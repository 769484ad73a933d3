"""Exercises of Weeks 3 and 4: timing, speed against accuracy, tracking, video, and the portfolio's numbers."""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.utils import draw_segmentation_masks

from course_lib.exercises.core import Exercise, Mistake, register
from course_lib.results import load_results, pareto_front
from course_lib.tracking.track import FORBIDDEN, assign

# --- where the time goes ----------------------------------------------------------------------------


def latency_summary(times_ms, warmup):
    """(median, p90) of the latencies after the first ``warmup`` runs."""
    kept = np.asarray(times_ms[warmup:])
    return float(np.median(kept)), float(np.percentile(kept, 90))


register(Exercise(
    name="latency_summary", chapter="book/week3/01_where_the_time_goes", title="Median and p90 latency", solution=latency_summary,
    cases=lambda: [([310.0, 95.0, 92.0, 101.0, 93.0, 97.0, 140.0, 94.0], 1), ([500.0, 210.0, 60.0, 61.0, 59.0, 75.0, 62.0], 2), ([40.0, 41.0, 39.0, 90.0], 0)],
    hint="drop the first `warmup` runs, then np.median and np.percentile(..., 90) of the rest",
    mistakes=(
        Mistake(lambda t, w: (float(np.median(t)), float(np.percentile(t, 90))), "drop the first `warmup` runs: they pay for memory allocation and lazy initialisation"),
        Mistake(lambda t, w: (float(np.mean(t[w:])), float(np.percentile(t[w:], 90))), "the median, not the mean: one slow run (a page fault, another process) drags the mean"),
        Mistake(lambda t, w: (float(np.median(t[w:])), float(max(t[w:]))), "p90 is the 90th percentile, not the slowest run"),
    ),
))


def scaled_ms(ms, size_from, size_to):
    """Time at ``size_to`` = (H, W) for work proportional to pixels."""
    pixels_from = size_from[0] * size_from[1]
    return ms * size_to[0] * size_to[1] / pixels_from


register(Exercise(
    name="scaled_ms", chapter="book/week3/01_where_the_time_goes", title="Backbone time at another input size", solution=scaled_ms,
    cases=lambda: [(20.0, (128, 256), (512, 1024)), (80.0, (512, 1024), (256, 512)), (35.0, (480, 640), (720, 1280))],
    hint="a convolution's work grows with the number of pixels: multiply by (H2 * W2) / (H1 * W1)",
    mistakes=(
        Mistake(lambda ms, a, b: ms * b[1] / a[1], "the work grows with the pixel COUNT (H * W), not with one side: doubling both sides is four times the work"),
        Mistake(lambda ms, a, b: ms * (a[0] * a[1]) / (b[0] * b[1]), "the ratio is upside down: a bigger input takes longer"),
    ),
))


# --- speed against accuracy -------------------------------------------------------------------------


def pareto(variants):
    """Names of the non-dominated (name, ms, ap) variants, fastest first."""
    front, best_ap = [], -1.0
    for name, ms, ap in sorted(variants, key=lambda v: v[1]):
        if ap > best_ap:  # more accurate than every faster variant
            front.append(name)
            best_ap = ap
    return front


def _variant_cases():
    committed = [(v["name"], v["median_ms"], v["mask_AP"]) for v in load_results("bench_cpu.json")["variants"]]
    return [(committed,), ([("a", 10.0, 0.30), ("b", 12.0, 0.28), ("c", 15.0, 0.40), ("d", 9.0, 0.10), ("e", 30.0, 0.39)],)]


register(Exercise(
    name="pareto", chapter="book/week3/02_speed_accuracy", title="The Pareto front", solution=pareto, cases=_variant_cases,
    expected=lambda variants: pareto_front({"variants": [{"name": n, "median_ms": ms, "mask_AP": ap} for n, ms, ap in variants]}),
    agrees_with="course_lib.results.pareto_front (first case: the committed bench_cpu.json)",
    hint="sort by latency; walking from fastest to slowest, keep a variant when its AP beats every faster one's",
    mistakes=(
        Mistake(lambda v: [min(v, key=lambda x: x[1])[0], max(v, key=lambda x: x[2])[0]],
                "the front is every variant that nothing beats on BOTH latency and AP, not only the two extremes"),
        Mistake(lambda v: [n for n, _, _ in sorted(v, key=lambda x: x[1])], "drop the dominated variants: a slower one with no better AP is never worth it"),
        Mistake(lambda v: [n for n, _, _ in sorted(v, key=lambda x: x[2], reverse=True)], "list the front fastest first, and leave out dominated variants"),
    ),
))


def resized_size(height, width, min_size, max_size):
    """(H, W) after GeneralizedRCNNTransform's resize."""
    scale = min(min_size / min(height, width),
                max_size / max(height, width))
    return math.floor(height * scale), math.floor(width * scale)


register(Exercise(
    name="resized_size", chapter="book/week3/02_speed_accuracy", title="The size the model really sees", solution=resized_size,
    cases=lambda: [(1024, 2048, 800, 1333), (480, 640, 800, 1333), (128, 256, 128, 256), (512, 1024, 512, 1024), (600, 400, 320, 512)],
    expected=lambda h, w, lo, hi: tuple(GeneralizedRCNNTransform(lo, hi, [0.0] * 3, [1.0] * 3).resize(torch.zeros(3, h, w), None)[0].shape[-2:]),
    agrees_with="torchvision's GeneralizedRCNNTransform.resize",
    hint="scale = min(min_size / short side, max_size / long side); new size = floor(side * scale)",
    mistakes=(
        Mistake(lambda h, w, lo, hi: (math.floor(h * lo / min(h, w)), math.floor(w * lo / min(h, w))),
                "the long side must not pass max_size: scale = min(min_size / short side, max_size / long side)"),
        Mistake(lambda h, w, lo, hi: (round(h * min(lo / min(h, w), hi / max(h, w))), round(w * min(lo / min(h, w), hi / max(h, w)))),
                "torchvision floors the scaled size (666.5 -> 666), it does not round"),
    ),
))


# --- tracking ---------------------------------------------------------------------------------------


def gated_matches(iou, gate):
    """Sorted (track, detection) pairs of the max-IoU assignment, gated."""
    # Written out, not course_lib.structures.matching.match_pairs: this is the solution the learner writes.
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-iou.numpy())
    return sorted((int(r), int(c)) for r, c in zip(rows, cols)
                  if iou[r, c] >= gate)


def _iou_matrix_cases():
    g = torch.Generator().manual_seed(7)
    greedy_trap = torch.tensor([[0.9, 0.8], [0.85, 0.1]])  # greedy takes (0, 0) and strands track 1
    return [(greedy_trap, 0.3), (torch.rand(4, 5, generator=g), 0.3), (torch.rand(6, 4, generator=g) ** 2, 0.2), (torch.tensor([[0.05, 0.6], [0.2, 0.1]]), 0.3)]


def _greedy(iou, gate):
    pairs, used_r, used_c = [], set(), set()
    for flat in iou.flatten().argsort(descending=True).tolist():
        r, c = divmod(flat, iou.shape[1])
        if r not in used_r and c not in used_c and iou[r, c] >= gate:
            pairs.append((r, c))
            used_r.add(r)
            used_c.add(c)
    return sorted(pairs)


register(Exercise(
    name="gated_matches", chapter="book/week3/03_tracking", title="Gated Hungarian matching", solution=gated_matches, cases=_iou_matrix_cases,
    expected=lambda iou, gate: sorted(assign(torch.where(iou >= gate, 1 - iou, torch.full_like(iou, FORBIDDEN)))[0]),
    agrees_with="course_lib.tracking.track.assign (scipy's linear_sum_assignment)",
    hint="scipy.optimize.linear_sum_assignment on -IoU (or 1 - IoU), then drop the pairs whose IoU is below the gate",
    mistakes=(
        Mistake(_greedy, "greedy best-pair-first is not optimal: the Hungarian algorithm (linear_sum_assignment) maximises the total IoU"),
        Mistake(lambda iou, gate: gated_matches(iou, -1.0), "apply the gate: a pair with IoU below it is no match, both sides stay unmatched"),
        Mistake(lambda iou, gate: sorted((r, int(iou[r].argmax())) for r in range(iou.shape[0]) if iou[r].max() >= gate),
                "one-to-one: two tracks may not take the same detection"),
    ),
))


def track_states(matched, min_hits, max_age):
    """A track's state in each frame from its birth, as the Tracker sets it."""
    state = "confirmed" if min_hits <= 1 else "tentative"
    hits, misses = 1, 0
    states = [state]
    for hit in matched:
        if state == "removed":
            pass
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


register(Exercise(
    name="track_states", chapter="book/week3/03_tracking", title="The life of a track", solution=track_states,
    cases=lambda: [([True, True, False, False, True], 3, 2), ([False, True], 2, 5), ([True, False, False, False, True], 2, 2), ([True, True, True], 1, 0)],
    agrees_with="the reference solution (the rules of course_lib.tracking.track.Tracker)",
    hint="born tentative (confirmed if min_hits <= 1); a hit confirms once hits >= min_hits (a lost track at once); a miss removes a tentative track, otherwise makes it lost, and removes it after more than max_age misses in a row",
    mistakes=(
        Mistake(lambda m, h, a: track_states(m, 1, a), "a new track stays tentative until it has been matched min_hits times"),
        Mistake(lambda m, h, a: [("lost" if s == "removed" and "confirmed" not in track_states(m, h, a)[: i + 1] else s) for i, s in enumerate(track_states(m, h, a))],
                "a TENTATIVE track that misses a frame is removed at once: it never proved to be an object"),
        Mistake(lambda m, h, a: track_states(m, h, a + 1), "a lost track is removed once its misses in a row EXCEED max_age (misses > max_age)"),
    ),
))


# --- video ------------------------------------------------------------------------------------------


def overlay(image, mask, colour, alpha):
    """uint8 [3, H, W] image with ``colour`` blended over ``mask`` [H, W]."""
    out = image.clone().float()
    tint = torch.tensor(colour, dtype=torch.float32)[:, None]
    out[:, mask] = (1 - alpha) * out[:, mask] + alpha * tint
    return out.to(torch.uint8)


def _overlay_cases():
    g = torch.Generator().manual_seed(8)
    cases = []
    for h, w, alpha in [(6, 8, 0.5), (5, 5, 0.8), (4, 7, 0.3)]:
        mask = torch.rand(h, w, generator=g) > 0.5
        cases.append((torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8), mask, (255, 40, 0), alpha))
    return cases


register(Exercise(
    name="overlay", chapter="book/week3/04_video_demo", title="Blend a mask into a frame", solution=overlay, cases=_overlay_cases,
    expected=lambda image, mask, colour, alpha: draw_segmentation_masks(image, mask, alpha=alpha, colors=[colour]),
    agrees_with="torchvision.utils.draw_segmentation_masks", atol=1.0,
    hint="inside the mask: (1 - alpha) * pixel + alpha * colour; outside: the pixel unchanged; back to uint8",
    mistakes=(
        Mistake(lambda image, mask, colour, alpha: overlay(image, mask, colour, 1 - alpha), "alpha is the opacity of the COLOUR: alpha * colour + (1 - alpha) * pixel"),
        Mistake(lambda image, mask, colour, alpha: ((1 - alpha) * image.float() + alpha * torch.tensor(colour, dtype=torch.float32)[:, None, None]).to(torch.uint8),
                "tint only the pixels inside the mask; the rest of the frame stays as it was"),
    ),
))


def kept_frames(num_frames, source_fps, target_fps):
    """Indices of the frames that play at ``target_fps`` without drift."""
    step = source_fps / target_fps
    return [i for i in range(num_frames)
            if i == 0 or math.floor(i / step) != math.floor((i - 1) / step)]


register(Exercise(
    name="kept_frames", chapter="book/week3/04_video_demo", title="Which frames to process", solution=kept_frames,
    cases=lambda: [(25, 25, 9), (30, 30, 10), (25, 25, 10), (24, 30, 12), (13, 29.97, 15)],
    hint="keep frame i when floor(i * target / source) steps up (frame 0 always): the kept frames then follow the target rate without drift",
    mistakes=(
        Mistake(lambda n, s, t: list(range(0, n, int(s // t))), "stepping by int(source / target) drifts when the rates do not divide (25 -> 10 fps keeps every 2nd frame, 12.5 fps)"),
        Mistake(lambda n, s, t: list(range(0, n, round(s / t))), "rounding the step drifts too: keep frame i when floor(i * target / source) steps up"),
    ),
))


# --- portfolio --------------------------------------------------------------------------------------


def stage_shares(stages_ms):
    """Each stage's share of the total time, from stage -> milliseconds."""
    total = sum(stages_ms.values())
    return {stage: ms / total for stage, ms in stages_ms.items()}


register(Exercise(
    name="stage_shares", chapter="book/week4/02_benchmarks", title="A results row from the committed JSON", solution=stage_shares,
    cases=lambda: [(v["stages_ms"],) for v in load_results("bench_cpu.json")["variants"][:3]],
    agrees_with="the reference solution, on the committed bench_cpu.json",
    hint="divide each stage's milliseconds by the sum over all stages",
    mistakes=(
        Mistake(lambda s: {k: 100 * v / sum(s.values()) for k, v in s.items()}, "a share is a fraction in [0, 1]; format it as a percentage only when printing"),
        Mistake(lambda s: {k: v / max(s.values()) for k, v in s.items()}, "divide by the TOTAL time (the sum of the stages), not by the slowest stage"),
    ),
))


def responsible_cell(box, image_size, grid):
    """(row, column) of the grid x grid YOLO cell holding the box centre."""
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    row = min(grid - 1, int(centre_y / image_size[0] * grid))
    column = min(grid - 1, int(centre_x / image_size[1] * grid))
    return row, column


register(Exercise(
    name="responsible_cell", chapter="book/week4/03_yolo_vs_maskrcnn", title="Which YOLO cell is responsible?", solution=responsible_cell,
    cases=lambda: [((10.0, 20.0, 50.0, 60.0), (128, 256), 8), ((200.0, 10.0, 256.0, 40.0), (128, 256), 4), ((0.0, 100.0, 30.0, 128.0), (128, 256), 13), ((60.0, 60.0, 70.0, 64.0), (128, 128), 2)],
    hint="the centre ((x1 + x2) / 2, (y1 + y2) / 2) decides; row = floor(cy / H * S), column = floor(cx / W * S)",
    mistakes=(
        Mistake(lambda b, size, s: responsible_cell(b, size, s)[::-1], "rows go down the image (y), columns across (x): return (row, column)"),
        Mistake(lambda b, size, s: (min(s - 1, int(b[1] / size[0] * s)), min(s - 1, int(b[0] / size[1] * s))), "the cell holding the box's CENTRE is responsible, not the one holding its corner"),
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


register(Exercise(
    name="kalman_step", chapter="book/week3/03_tracking", title="One step of a Kalman filter", solution=kalman_step,
    cases=_kalman_cases,
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
