"""Exercises of Week 2 (training): ToyCity's ground truth, Cityscapes ids, augmentation, schedules, sampling, AP."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from cityscapesscripts.evaluation.instance import Instance
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms.v2 import functional as TF

from course_lib.data.sampling import repeat_factors
from course_lib.exercises.core import Exercise, Mistake, register
from course_lib.exercises.generate import random_boxes, seeded


def _blob_masks(seed: int) -> list[torch.Tensor]:
    """Bool [H, W] masks of irregular blobs away from (and touching) the image border."""
    g = torch.Generator().manual_seed(seed)
    masks = []
    for h, w, (y0, y1, x0, x1) in [(10, 16, (2, 7, 3, 12)), (12, 8, (0, 12, 5, 8)), (6, 6, (3, 4, 1, 2)), (9, 14, (1, 8, 0, 9))]:
        mask = torch.zeros(h, w, dtype=torch.bool)
        mask[y0:y1, x0:x1] = torch.rand(y1 - y0, x1 - x0, generator=g) > 0.35
        mask[y0, x0], mask[y1 - 1, x1 - 1] = True, True  # the extremes are set, so the box is known
        masks.append(mask)
    return masks


def _edge_masks() -> list[torch.Tensor]:
    """A single pixel, a full mask, one row, one column, two blobs far apart, pixels on every border; then random blobs."""
    single = torch.zeros(5, 7, dtype=torch.bool)
    single[3, 2] = True
    corners = torch.zeros(6, 9, dtype=torch.bool)
    corners[0, 8], corners[5, 0] = True, True
    two = torch.zeros(8, 8, dtype=torch.bool)
    two[1, 1], two[6, 5] = True, True
    g = seeded(40)
    random = [torch.rand(h, w, generator=g) > p for h, w, p in [(12, 12, 0.9), (20, 5, 0.7), (3, 30, 0.95), (16, 16, 0.5)]]
    return [single, torch.ones(4, 3, dtype=torch.bool), torch.ones(1, 9, dtype=torch.bool), torch.ones(9, 1, dtype=torch.bool), corners, two] + [m for m in random if m.any()]


# --- ToyCity -------------------------------------------------------------------------------------


def box_from_mask(mask):
    """Tight (x1, y1, x2, y2) box of the True pixels of a mask [H, W]."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return (float(xs.min()), float(ys.min()),
            float(xs.max()) + 1, float(ys.max()) + 1)


register(Exercise(
    name="box_from_mask", chapter="book/week2/01_toycity", title="A box from a mask", solution=box_from_mask,
    cases=lambda: [(m,) for m in _blob_masks(0)], generated=lambda: [(m,) for m in _edge_masks()],
    expected=lambda m: masks_to_boxes(m[None])[0] + torch.tensor([0.0, 0.0, 1.0, 1.0]),
    agrees_with="torchvision.ops.masks_to_boxes, whose x2 and y2 index the last pixel (plus one here: the box covers whole pixels)",
    hint="x1, y1 = smallest column and row with a True pixel; x2, y2 = largest column and row + 1",
    mistakes=(
        Mistake(lambda m: tuple(float(v) for v in torch.nonzero(m).min(0).values.tolist() + (torch.nonzero(m).max(0).values + 1).tolist()),
                "nonzero gives (row, column) = (y, x): a box is (x1, y1, x2, y2)"),
        Mistake(lambda m: box_from_mask(m)[:2] + (box_from_mask(m)[2] - 1, box_from_mask(m)[3] - 1),
                "the box covers whole pixels: the last pixel at column x ends at x + 1"),
        Mistake(lambda m: box_from_mask(m)[:2] + (box_from_mask(m)[2] - box_from_mask(m)[0], box_from_mask(m)[3] - box_from_mask(m)[1]),
                "a box is (x1, y1, x2, y2), two corners, not (x, y, width, height)"),
    ),
))


def occlusion(amodal_mask, visible_mask):
    """Fraction of an object's full (amodal) extent that is hidden."""
    return 1 - float(visible_mask.sum()) / float(amodal_mask.sum())


def _occlusion_cases():
    masks = _blob_masks(1)
    return [(m, m & (torch.arange(m.shape[1]) < cut)) for m, cut in zip(masks, (8, 6, 2, 4))]


def _occlusion_generated():
    masks = _edge_masks()
    return [(m, m) for m in masks[:2]] + [(m, torch.zeros_like(m)) for m in masks[:2]] + [(m, m & (torch.rand(m.shape, generator=seeded(41)) > 0.5)) for m in masks[5:]]


register(Exercise(
    name="occlusion", chapter="book/week2/01_toycity", title="How occluded is an object?", solution=occlusion, cases=_occlusion_cases,
    generated=_occlusion_generated,
    expected=lambda amodal, visible: float((amodal & ~visible).sum()) / float(amodal.sum()),
    agrees_with="the count of hidden pixels (amodal and not visible) over the amodal ones",
    hint="1 - visible pixels / amodal pixels",
    mistakes=(
        Mistake(lambda a, v: float(v.sum()) / float(a.sum()), "that is the visible share; occlusion is the hidden share, 1 minus it"),
        Mistake(lambda a, v: float((a & ~v).sum()) / float(v.sum()), "divide by the amodal (full) area, not the visible one"),
        Mistake(lambda a, v: float((a & ~v).sum()) / a.numel(), "divide by the object's amodal area, not by the number of pixels in the image"),
    ),
))


# --- Cityscapes ids and augmentation --------------------------------------------------------------


def label_id(value):
    """The Cityscapes label id of a value in an ``*_instanceIds.png``."""
    return value // 1000 if value >= 1000 else value


register(Exercise(
    name="label_id", chapter="book/week2/02_data_and_augmentation", title="Decode a Cityscapes instance id", solution=label_id,
    cases=lambda: [(26003,), (24000,), (7,), (33012,), (26,), (25999,)],
    generated=lambda: [(0,), (1,), (999,), (1000,), (1999,), (33999,), (26000,)] + [(int(v),) for v in np.random.default_rng(42).integers(24, 34, 15) * 1000 + np.random.default_rng(43).integers(0, 1000, 15)],
    expected=lambda value: Instance.getLabelID(None, value), agrees_with="cityscapesscripts' Instance.getLabelID",
    hint="values >= 1000 are label id * 1000 + instance number; smaller values are a plain label id (stuff, or a crowd region)",
    mistakes=(
        Mistake(lambda value: value % 1000, "value % 1000 is the instance number; the label id is value // 1000"),
        Mistake(lambda value: value // 1000, "values below 1000 carry no instance number: they ARE the label id"),
        Mistake(lambda value: round(value / 1000) if value >= 1000 else value, "integer division (//), not rounding: 25999 is instance 999 of label 25"),
    ),
))


def hflip_box(box, width):
    """An (x1, y1, x2, y2) box after a left-right flip of the image."""
    x1, y1, x2, y2 = box
    return (width - x2, y1, width - x1, y2)


register(Exercise(
    name="hflip_box", chapter="book/week2/02_data_and_augmentation", title="Flip a box", solution=hflip_box,
    cases=lambda: [((1.0, 2.0, 5.0, 6.0), 20), ((0.0, 0.0, 10.0, 4.0), 10), ((3.5, 1.0, 7.25, 9.0), 16)],
    generated=lambda: [((0.0, 1.0, 3.0, 2.0), 11), ((8.0, 1.0, 11.0, 2.0), 11), ((4.0, 4.0, 4.0, 9.0), 9), ((0.0, 0.0, 1.0, 1.0), 1), ((2.5, 0.0, 2.75, 30.0), 7)]
    + [(tuple(b), 64) for b in random_boxes(10, seeded(44), 40, 24).tolist()],
    expected=lambda box, width: TF.horizontal_flip(tv_tensors.BoundingBoxes(torch.tensor([box]), format="XYXY", canvas_size=(32, width)))[0],
    agrees_with="transforms.v2's horizontal_flip of BoundingBoxes",
    hint="x -> width - x, and x1, x2 swap roles; y is unchanged",
    mistakes=(
        Mistake(lambda box, width: (width - box[0], box[1], width - box[2], box[3]), "after a flip the left edge comes from the old RIGHT edge: x1' = width - x2"),
        Mistake(lambda box, width: (width - 1 - box[2], box[1], width - 1 - box[0], box[3]),
                "box coordinates are pixel EDGES, not pixel centres: x -> width - x (no - 1)"),
        Mistake(lambda box, width: (box[0], width - box[3], box[2], width - box[1]), "a left-right flip changes x, not y"),
    ),
))


# --- training --------------------------------------------------------------------------------------


def lr_multiplier(step, warmup_steps, steps):
    """Factor of the base learning rate at 0-based ``step``."""
    if step < warmup_steps:  # linear warm-up from 0.001 to 1
        alpha = step / warmup_steps
        return 0.001 * (1 - alpha) + alpha
    progress = (step - warmup_steps) / (steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress))  # cosine to 0


register(Exercise(
    name="lr_multiplier", chapter="book/week2/03_training", title="Warm-up, then cosine decay", solution=lr_multiplier,
    cases=lambda: [(s, 10, 100) for s in (0, 5, 10, 40, 99)] + [(s, 50, 1650) for s in (25, 50, 900, 1650)],
    generated=lambda: [(s, w, n) for w, n in [(1, 5), (10, 11), (3, 40), (200, 1000)] for s in sorted({0, 1, w - 1, w, w + 1, (w + n) // 2, n - 1, n})],
    expected=lambda step, warmup, steps: _torch_schedule(warmup, steps)[step],
    agrees_with="torch.optim.lr_scheduler's LinearLR warm-up chained with CosineAnnealingLR over the steps after it",
    hint="warm-up: 0.001 * (1 - a) + a with a = step / warmup_steps; after it: 0.5 * (1 + cos(pi * progress)), progress counted from the end of warm-up",
    mistakes=(
        Mistake(lambda step, warmup, steps: step / warmup if step < warmup else lr_multiplier(step, warmup, steps),
                "the warm-up starts at 0.001 of the base rate, not at 0: a zero step wastes an update"),
        Mistake(lambda step, warmup, steps: lr_multiplier(step, warmup, steps) if step < warmup else 0.5 * (1 + math.cos(math.pi * step / steps)),
                "the decay starts where the warm-up ends: progress = (step - warmup_steps) / (steps - warmup_steps)"),
        Mistake(lambda step, warmup, steps: lr_multiplier(step, warmup, steps) if step < warmup else math.cos(math.pi / 2 * (step - warmup) / (steps - warmup)),
                "the cosine schedule is 0.5 * (1 + cos(pi * progress)), half a period of the cosine"),
        Mistake(lambda step, warmup, steps: lr_multiplier(step + 1, warmup, steps) if step < warmup else lr_multiplier(step, warmup, steps),
                "steps are 0-based: step 0 runs at exactly 0.001 of the base rate, and step warmup_steps is the first at the full rate"),
    ),
))


@functools.cache
def _torch_schedule(warmup_steps: int, steps: int) -> tuple[float, ...]:
    """The multiplier at every step 0..steps from torch's own schedulers, chained as the recipe chains them."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = SequentialLR(optimizer, [LinearLR(optimizer, 0.001, 1.0, total_iters=warmup_steps), CosineAnnealingLR(optimizer, T_max=steps - warmup_steps)],
                             milestones=[warmup_steps])
    factors = []
    for _ in range(steps + 1):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return tuple(factors)


def image_repeat_factors(label_sets, threshold):
    """LVIS repeat factor of each image, from every image's class set."""
    classes = set().union(*label_sets)
    fraction = {c: sum(c in labels for labels in label_sets) / len(label_sets)
                for c in classes}
    factor = {c: max(1.0, math.sqrt(threshold / fraction[c])) for c in classes}
    return [max((factor[c] for c in labels), default=1.0)
            for labels in label_sets]


def _label_set_cases():
    rng = np.random.default_rng(6)
    cases = [([{1, 2}, {1}, {1, 3}, {1, 2}, {1}, {4, 1}, {1}, set()], 0.3)]
    for n, t in [(30, 0.2), (50, 0.44)]:
        cases.append(([set(rng.choice(8, size=rng.integers(1, 4), replace=False, p=[0.4, 0.25, 0.15, 0.1, 0.04, 0.03, 0.02, 0.01]).tolist()) for _ in range(n)], t))
    return cases


register(Exercise(
    name="repeat_factors", chapter="book/week2/03_training", title="Repeat factors for rare classes", solution=image_repeat_factors,
    cases=_label_set_cases, expected=lambda label_sets, t: repeat_factors(label_sets, t), agrees_with="course_lib.data.sampling.repeat_factors",
    generated=lambda: [([set(), set()], 0.5), ([{3}], 0.9), ([{1}, {1}, {1}, {1, 2}], 0.25), ([{1}, {2}, {1, 2}, set()], 0.5), ([{0}, {0}, {1}], 1.0)]
    + [([set(np.flatnonzero(row).tolist()) for row in np.random.default_rng(s).random((n, 6)) < 0.2], t) for s, n, t in [(46, 40, 0.1), (47, 12, 0.3), (48, 100, 0.05)]],
    hint="f_c = share of images containing class c; r_c = max(1, sqrt(t / f_c)); an image takes the max of its classes' r_c (1 with none)",
    mistakes=(
        Mistake(lambda ls, t: [float(np.mean([max(1.0, math.sqrt(t / (sum(c in s for s in ls) / len(ls)))) for c in labels])) if labels else 1.0 for labels in ls],
                "an image takes the MAX over its classes (its rarest class decides), not the mean"),
        Mistake(lambda ls, t: [max((max(1.0, t / (sum(c in s for s in ls) / len(ls))) for c in labels), default=1.0) for labels in ls],
                "take the square root: r_c = max(1, sqrt(t / f_c)) (LVIS), which repeats rare images less aggressively"),
        Mistake(lambda ls, t: [min((max(1.0, math.sqrt(t / (sum(c in s for s in ls) / len(ls)))) for c in labels), default=1.0) for labels in ls],
                "an image takes the MAX over its classes: its rarest class decides, not its most common one"),
        Mistake(lambda ls, t: [max((math.sqrt(t / (sum(c in s for s in ls) / len(ls))) for c in labels), default=1.0) for labels in ls],
                "r_c = max(1, sqrt(t / f_c)): a common class (f_c > t) is never sampled LESS than once"),
    ),
))


# --- evaluation -------------------------------------------------------------------------------------


def precision_recall(is_true_positive, num_ground_truth):
    """Precision and recall after each detection (sorted by score)."""
    tp = np.cumsum(is_true_positive)
    ranks = np.arange(1, len(is_true_positive) + 1)
    return (tp / ranks).tolist(), (tp / num_ground_truth).tolist()


register(Exercise(
    name="precision_recall", chapter="book/week2/04_evaluation", title="Precision and recall down the ranking", solution=precision_recall,
    cases=lambda: [([1, 1, 0, 1, 0], 4), ([0, 1, 1, 1, 0, 0, 1], 5), ([1, 0, 0, 0], 2)],
    generated=lambda: [([], 3), ([1], 1), ([0], 2), ([0, 0, 0], 1), ([1, 1, 1], 3), ([1, 1], 5)]
    + [(np.random.default_rng(s).integers(0, 2, n).tolist(), n + 2) for s, n in [(49, 20), (50, 7), (51, 40)]],
    agrees_with="the reference solution (a test checks it, with average_precision, against pycocotools)",
    hint="cumulative true positives after k detections: precision = TP_k / k, recall = TP_k / number of ground-truth objects",
    mistakes=(
        Mistake(lambda flags, n: ((np.cumsum(flags) / np.arange(1, len(flags) + 1)).tolist(), (np.cumsum(flags) / len(flags)).tolist()),
                "recall divides by the number of GROUND-TRUTH objects, not by the number of detections"),
        Mistake(lambda flags, n: ([float(f) for f in flags], [float(f) / n for f in flags]), "accumulate: after k detections count ALL true positives so far (a cumulative sum)"),
        Mistake(lambda flags, n: precision_recall(flags, n)[::-1], "return (precision, recall), in that order"),
    ),
))


def average_precision(recall, precision):
    """COCO's AP: the precision envelope read at 101 recall points."""
    precision = np.asarray(precision, dtype=float)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0, 1, 101)
    found = np.searchsorted(recall, points, side="left")
    return float(np.mean([envelope[i] if i < len(envelope) else 0.0
                          for i in found]))


def _ap_searching(recall, precision, side):
    envelope = np.maximum.accumulate(np.asarray(precision, dtype=float)[::-1])[::-1]
    found = np.searchsorted(recall, np.linspace(0, 1, 101), side=side)
    return float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in found]))


def _pr_cases(rankings=(([1, 1, 0, 1, 0], 4), ([0, 1, 1, 1, 0, 0, 1], 5), ([1, 0, 1, 0, 0, 1, 1, 0, 1], 6))):
    cases = []
    for flags, n in rankings:
        precision, recall = precision_recall(flags, n)
        cases.append((recall, precision))
    return cases


def _pr_generated():
    """No detection, one, recall reaching exactly 1, recall stuck below it, recalls on the 101 points (n = 4, 20), then random rankings."""
    rankings = [([], 2), ([1], 1), ([0, 1], 1), ([1, 1, 1, 1], 4), ([0, 0, 1], 4), ([1, 0, 1, 1, 0, 1], 4), ([1] * 20, 20), ([0, 1] * 10, 20)]
    rankings += [(np.random.default_rng(s).integers(0, 2, n).tolist(), m) for s, n, m in [(52, 30, 20), (53, 12, 5), (54, 60, 40)]]
    return _pr_cases([(flags, n) for flags, n in rankings])


register(Exercise(
    name="average_precision", chapter="book/week2/04_evaluation", title="AP from a precision-recall list", solution=average_precision,
    cases=_pr_cases, generated=_pr_generated, agrees_with="the reference solution (COCOeval's interpolation; a test checks it against pycocotools)",
    hint="p[i] = max(p[i:]) first; then for each recall point r in linspace(0, 1, 101) take p at the first rank whose recall >= r (0 if none); average",
    mistakes=(
        Mistake(lambda r, p: float(np.mean([p[i] if i < len(p) else 0.0 for i in np.searchsorted(r, np.linspace(0, 1, 101), side="left")])),
                "make precision non-increasing first (p[i] = max(p[i:])): the interpolated precision is the best achievable at that recall or more"),
        Mistake(lambda r, p: float(np.mean(p)), "average over the recall points 0, 0.01, ..., 1, not over the detections"),
        Mistake(lambda r, p: float(np.trapezoid(np.maximum.accumulate(np.asarray(p)[::-1])[::-1], r)),
                "COCO samples the envelope at 101 recall points instead of integrating between detections"),
        Mistake(lambda r, p: _ap_searching(r, p, side="right"),
                "take the FIRST rank whose recall is >= the point (searchsorted side='left'): side='right' skips a rank whose recall equals the point exactly"),
    ),
))
