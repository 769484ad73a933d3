"""Exercises of Week 3's speed chapters: latency statistics, time against input size, the Pareto front, the resize."""

from __future__ import annotations

import math
import statistics

import numpy as np
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from course_lib.exercises.core import Exercise, Mistake, register
from course_lib.results import load_results

# --- where the time goes ----------------------------------------------------------------------------


def latency_summary(times_ms, warmup):
    """(median, p90) of the latencies after the first ``warmup`` runs."""
    kept = np.asarray(times_ms[warmup:])
    return float(np.median(kept)), float(np.percentile(kept, 90))


def _latency_generated():
    edges = [([500.0, 80.0], 1), ([90.0, 91.0], 0), ([300.0, 50.0, 50.0, 50.0, 50.0], 1), ([10.0] * 9 + [1000.0], 0),
             ([700.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 1), ([400.0, 300.0, 20.0, 30.0, 25.0, 21.0], 2)]
    rng = np.random.default_rng(18)
    random = [((rng.gamma(4.0, 10.0, n) + 40).round(2).tolist(), int(w)) for n, w in zip(rng.integers(3, 40, 20), rng.integers(0, 3, 20))]
    return edges + random


register(Exercise(
    name="latency_summary", chapter="book/week3/01_where_the_time_goes", title="Median and p90 latency", solution=latency_summary,
    cases=lambda: [([310.0, 95.0, 92.0, 101.0, 93.0, 97.0, 140.0, 94.0], 1), ([500.0, 210.0, 60.0, 61.0, 59.0, 75.0, 62.0], 2), ([40.0, 41.0, 39.0, 90.0], 0)],
    generated=_latency_generated,
    expected=lambda t, w: (statistics.median(t[w:]), float(np.percentile(t[w:], 90, method="linear"))),
    agrees_with="statistics.median and numpy's default (linear) percentile",
    hint="drop the first `warmup` runs, then np.median and np.percentile(..., 90) of the rest (numpy's default, linear interpolation between ranks)",
    mistakes=(
        Mistake(lambda t, w: (float(np.median(t)), float(np.percentile(t, 90))), "drop the first `warmup` runs: they pay for memory allocation and lazy initialisation"),
        Mistake(lambda t, w: (float(np.mean(t[w:])), float(np.percentile(t[w:], 90))), "the median, not the mean: one slow run (a page fault, another process) drags the mean"),
        Mistake(lambda t, w: (float(np.median(t[w:])), float(max(t[w:]))), "p90 is the 90th percentile, not the slowest run"),
        Mistake(lambda t, w: (float(np.median(t[w:])), float(np.percentile(t[w:], 90, method="nearest"))),
                "the task's p90 interpolates linearly between the two nearest ranks (numpy's default), it does not pick the nearest run"),
        Mistake(lambda t, w: (float(np.median(t[w + 1:])), float(np.percentile(t[w + 1:], 90))), "off by one: times_ms[warmup:] drops exactly `warmup` runs"),
    ),
))


def scaled_ms(ms, size_from, size_to):
    """Time at ``size_to`` = (H, W) for work proportional to pixels."""
    pixels_from = size_from[0] * size_from[1]
    return ms * size_to[0] * size_to[1] / pixels_from


register(Exercise(
    name="scaled_ms", chapter="book/week3/01_where_the_time_goes", title="Backbone time at another input size", solution=scaled_ms,
    cases=lambda: [(20.0, (128, 256), (512, 1024)), (80.0, (512, 1024), (256, 512)), (35.0, (480, 640), (720, 1280))],
    generated=lambda: [(12.0, (100, 100), (100, 100)), (10.0, (1, 1000), (1000, 1)), (50.0, (512, 1024), (512, 2048)), (7.5, (333, 517), (1, 1))]
    + [(float(ms), (int(a), int(b)), (int(c), int(d))) for ms, a, b, c, d in zip(np.random.default_rng(55).uniform(1, 200, 10).round(1), *np.random.default_rng(56).integers(1, 2049, (4, 10)))],
    hint="a convolution's work grows with the number of pixels: multiply by (H2 * W2) / (H1 * W1)",
    mistakes=(
        Mistake(lambda ms, a, b: ms * b[1] / a[1], "the work grows with the pixel COUNT (H * W), not with one side: doubling both sides is four times the work"),
        Mistake(lambda ms, a, b: ms * (a[0] * a[1]) / (b[0] * b[1]), "the ratio is upside down: a bigger input takes longer"),
        Mistake(lambda ms, a, b: ms * (b[0] + b[1]) / (a[0] + a[1]), "the work grows with the AREA H * W, not with the perimeter H + W"),
    ),
))


# --- speed against accuracy -------------------------------------------------------------------------


def pareto(variants):
    """Names of the non-dominated (name, ms, ap) variants, fastest first."""
    front, best_ap = [], -1.0
    for name, ms, ap in sorted(variants, key=lambda v: (v[1], -v[2])):
        if ap > best_ap:  # more accurate than every variant at least as fast
            front.append(name)
            best_ap = ap
    return front


def _dominance_front(variants):
    """Independent truth: every variant no other beats (at least as fast and as accurate, better in one), fastest first."""
    def beaten(ms, ap):
        return any(m <= ms and a >= ap and (m, a) != (ms, ap) for _, m, a in variants)

    return [name for name, ms, ap in sorted(variants, key=lambda v: v[1]) if not beaten(ms, ap)]


def _walk(variants, better, key=lambda v: (v[1], -v[2])):
    """The fastest-first walk with the comparison ``better(ap, best_ap)`` and sort ``key`` as parameters (for the mistakes)."""
    front, best_ap = [], -1.0
    for name, _, ap in sorted(variants, key=key):
        if better(ap, best_ap):
            front.append(name)
            best_ap = ap
    return front


def _variant_cases():
    committed = [(v["name"], v["median_ms"], v["mask_AP"]) for v in load_results("bench_cpu.json")["variants"]]
    return [(committed,), ([("a", 10.0, 0.30), ("b", 12.0, 0.28), ("c", 15.0, 0.40), ("d", 9.0, 0.10), ("e", 30.0, 0.39)],)]


def _variant_generated():
    edges = [([("only", 5.0, 0.2)],), ([("slow", 20.0, 0.5), ("same_ap", 30.0, 0.5)],),  # equal AP: the slower is dominated
             ([("worse", 10.0, 0.3), ("better", 10.0, 0.4)],),  # equal latency: the less accurate is dominated
             ([("c", 3.0, 0.9), ("b", 2.0, 0.5), ("a", 1.0, 0.1)],), ([("fast_best", 1.0, 0.9), ("x", 2.0, 0.5), ("y", 3.0, 0.1)],)]
    rng = np.random.default_rng(19)
    random = []
    for n in rng.integers(2, 15, 15):
        ms, ap = rng.permutation(np.arange(10, 10 + n)).astype(float), rng.permutation(np.arange(n)) / 20  # distinct values
        random.append(([(f"v{i}", float(m), float(a)) for i, (m, a) in enumerate(zip(ms, ap))],))
    return edges + random


register(Exercise(
    name="pareto", chapter="book/week3/02_speed_accuracy", title="The Pareto front", solution=pareto, cases=_variant_cases, generated=_variant_generated,
    expected=_dominance_front, agrees_with="the definition, checked pair by pair (first case: the committed bench_cpu.json)",
    hint="sort by latency (then by AP, best first); walking from fastest to slowest, keep a variant when its AP beats every variant kept before it",
    mistakes=(
        Mistake(lambda v: [min(v, key=lambda x: x[1])[0], max(v, key=lambda x: x[2])[0]],
                "the front is every variant that nothing beats on BOTH latency and AP, not only the two extremes"),
        Mistake(lambda v: [n for n, _, _ in sorted(v, key=lambda x: x[1])], "drop the dominated variants: a slower one with no better AP is never worth it"),
        Mistake(lambda v: [n for n, _, _ in sorted(v, key=lambda x: x[2], reverse=True)], "list the front fastest first, and leave out dominated variants"),
        Mistake(lambda v: _walk(v, lambda ap, best: ap >= best), "a slower variant with the SAME AP is dominated: keep a variant only when its AP is strictly better"),
        Mistake(lambda v: _walk(v, lambda ap, best: ap > best, key=lambda x: x[1]),
                "at equal latency the more accurate variant dominates the other: sort ties by AP, best first"),
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
    generated=lambda: [(100, 100, 800, 1333), (50, 4000, 800, 1333), (4000, 50, 512, 1024), (800, 1333, 800, 1333), (342, 548, 1024, 2048),
                       (375, 500, 600, 1000), (333, 500, 800, 1333), (1, 3, 2, 5), (720, 1280, 600, 1000)],
    expected=lambda h, w, lo, hi: tuple(GeneralizedRCNNTransform(lo, hi, [0.0] * 3, [1.0] * 3).resize(torch.zeros(3, h, w), None)[0].shape[-2:]),
    agrees_with="torchvision's GeneralizedRCNNTransform.resize",
    hint="scale = min(min_size / short side, max_size / long side); new size = floor(side * scale), as (H, W)",
    mistakes=(
        Mistake(lambda h, w, lo, hi: (math.floor(h * lo / min(h, w)), math.floor(w * lo / min(h, w))),
                "the long side must not pass max_size: scale = min(min_size / short side, max_size / long side)"),
        Mistake(lambda h, w, lo, hi: (round(h * min(lo / min(h, w), hi / max(h, w))), round(w * min(lo / min(h, w), hi / max(h, w)))),
                "torchvision floors the scaled size (666.5 -> 666), it does not round"),
        Mistake(lambda h, w, lo, hi: resized_size(h, w, lo, hi)[::-1], "return (H, W), height first, like the tensor's last two dimensions"),
    ),
))
