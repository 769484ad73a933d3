"""Failure analysis: which objects a model misses, which detections are false, which classes it confuses.

AP condenses errors into one number; this module lists them. Detections scoring at least
``score_threshold`` are matched one-to-one to target objects by mask IoU (Hungarian matching,
*ignoring* class, so that a bus detected as a truck shows up as a confusion rather than as one
miss plus one false detection). Then each target object is

- *found*: matched to a detection of its class;
- *confused*: matched to a detection of another class;
- *missed*: not matched;

and each unmatched detection is *false*, unless most of it lies on a crowd region (``iscrowd=1``),
where it is ignored as COCO and the Cityscapes evaluation do. Misses are broken down by object size
(COCO's area ranges) and, where targets carry ``occlusion`` (fraction of the object hidden, as in
ToyCity), by occlusion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from course_lib.classes import CLASSES
from course_lib.evaluation.matched_masks import kept_indices, object_indices
from course_lib.structures.masks import binary_masks, mask_iou
from course_lib.structures.matching import match_pairs
from course_lib.viz.overlay import draw_masks_and_boxes

#: COCO's object size ranges in mask pixels: small < 32^2 <= medium < 96^2 <= large.
SIZE_BINS = (("small", 0, 32**2), ("medium", 32**2, 96**2), ("large", 96**2, float("inf")))
#: Fraction of the object hidden by others.
OCCLUSION_BINS = (("visible (<10%)", 0.0, 0.1), ("partly (10-50%)", 0.1, 0.5), ("mostly (>=50%)", 0.5, 1.01))


@dataclass
class ImageErrors:
    """Errors of one image, as indices into its prediction / target dicts."""

    index: int
    found: list[tuple[int, int]] = field(default_factory=list)  # (prediction, target), same class
    confused: list[tuple[int, int]] = field(default_factory=list)  # (prediction, target), other class
    missed: list[int] = field(default_factory=list)  # target indices
    false: list[int] = field(default_factory=list)  # prediction indices

    @property
    def n_errors(self) -> int:
        return len(self.confused) + len(self.missed) + len(self.false)


@dataclass
class FailureReport:
    """Counts over a dataset. ``confusion[t, p]``: target class t, predicted class p; row 0 counts
    false detections (no object), column 0 missed objects (no detection)."""

    class_names: Sequence[str]
    confusion: np.ndarray
    by_size: dict[str, dict[str, int]]
    by_occlusion: dict[str, dict[str, int]] | None
    images: list[ImageErrors]

    def per_class(self) -> dict[str, dict[str, int]]:
        """Per class: objects, found, confused, missed; detections, false (from the confusion matrix)."""
        c = self.confusion
        return {name: {"objects": int(c[k].sum()), "found": int(c[k, k]),
                       "confused": int(c[k, 1:].sum() - c[k, k]), "missed": int(c[k, 0]),
                       "detections": int(c[:, k].sum()), "false": int(c[0, k])}
                for k, name in enumerate(self.class_names) if k > 0}

    def worst_images(self, n: int = 6) -> list[ImageErrors]:
        """The ``n`` images with the most errors (confused + missed + false), worst first."""
        return sorted(self.images, key=lambda e: -e.n_errors)[:n]

    def table(self) -> str:
        """Plain-text per-class, size and occlusion tables."""
        rows = [f"{'class':12s} {'objects':>7s} {'found':>6s} {'confused':>8s} {'missed':>6s} {'detections':>10s} {'false':>6s}"]
        rows += [f"{name:12s} {r['objects']:7d} {r['found']:6d} {r['confused']:8d} {r['missed']:6d} {r['detections']:10d} {r['false']:6d}"
                 for name, r in self.per_class().items()]
        for title, bins in (("size", self.by_size), ("occlusion", self.by_occlusion)):
            for name, r in (bins or {}).items():
                rate = r["missed"] / r["objects"] if r["objects"] else float("nan")
                rows.append(f"{title:9s} {name:16s} objects {r['objects']:5d}  missed {r['missed']:5d}  miss rate {rate:.2f}")
        return "\n".join(rows)


def _bin(value: float, bins: Sequence[tuple[str, float, float]]) -> str:
    return next(name for name, low, high in bins if low <= value < high)


def _image_errors(index: int, prediction: dict, target: dict, iou: float, score_threshold: float) -> ImageErrors:
    kept, objects = kept_indices(prediction, score_threshold), object_indices(target)
    ious = mask_iou(prediction["masks"][kept], target["masks"][objects])
    errors = ImageErrors(index)
    pairs = match_pairs(ious, iou)
    for p, g in pairs:
        pair = (int(kept[p]), int(objects[g]))
        same = prediction["labels"][pair[0]] == target["labels"][pair[1]]
        (errors.found if same else errors.confused).append(pair)
    matched_p, matched_g = {p for p, _ in pairs}, {g for _, g in pairs}
    errors.missed = [int(objects[g]) for g in range(len(objects)) if g not in matched_g]
    crowd = [g for g in range(len(target["labels"])) if g not in set(objects.tolist())]
    on_crowd = _fraction_on(prediction["masks"][kept], target["masks"][crowd])
    errors.false = [int(kept[p]) for p in range(len(kept)) if p not in matched_p and on_crowd[p] < iou]
    return errors


def _fraction_on(pred_masks: torch.Tensor, regions: torch.Tensor) -> np.ndarray:
    """[P] fraction of each predicted mask's pixels that lie inside the union of ``regions`` [K, H, W]."""
    pred = binary_masks(pred_masks).cpu()
    if len(regions) == 0 or len(pred) == 0:
        return np.zeros(len(pred))
    union = binary_masks(regions).cpu().any(dim=0)
    return ((pred & union).flatten(1).sum(1) / pred.flatten(1).sum(1).clamp(min=1)).numpy()


def failure_analysis(predictions: Sequence[dict], targets: Sequence[dict], iou: float = 0.5,
                     score_threshold: float = 0.5, class_names: Sequence[str] = CLASSES) -> FailureReport:
    """Match, classify and count errors as described in the module docstring."""
    confusion = np.zeros((len(class_names), len(class_names)), dtype=np.int64)
    by_size = {name: {"objects": 0, "missed": 0} for name, _, _ in SIZE_BINS}
    has_occlusion = all("occlusion" in t for t in targets) and len(targets) > 0
    by_occlusion = {name: {"objects": 0, "missed": 0} for name, _, _ in OCCLUSION_BINS} if has_occlusion else None
    images = []
    for index, (prediction, target) in enumerate(zip(predictions, targets)):
        errors = _image_errors(index, prediction, target, iou, score_threshold)
        images.append(errors)
        pred_labels, gt_labels = prediction["labels"].tolist(), target["labels"].tolist()
        for p, g in errors.found + errors.confused:
            confusion[gt_labels[g], pred_labels[p]] += 1
        for g in errors.missed:
            confusion[gt_labels[g], 0] += 1
        for p in errors.false:
            confusion[0, pred_labels[p]] += 1
        missed = set(errors.missed)
        areas = binary_masks(target["masks"]).flatten(1).sum(1).tolist() if gt_labels else []
        for g in object_indices(target).tolist():
            groups = [by_size[_bin(areas[g], SIZE_BINS)]]
            if by_occlusion is not None:
                groups.append(by_occlusion[_bin(float(target["occlusion"][g]), OCCLUSION_BINS)])
            for group in groups:
                group["objects"] += 1
                group["missed"] += g in missed
    return FailureReport(tuple(class_names), confusion, by_size, by_occlusion, images)


def draw_errors(image: torch.Tensor, prediction: dict, target: dict, errors: ImageErrors,
                class_names: Sequence[str] = CLASSES, scale: int = 1) -> torch.Tensor:
    """uint8 [3, scale*H, scale*W] picture of one image's errors: found green, confused orange,
    missed (target masks) red, false detections magenta, each box labelled with its class.

    ``scale`` enlarges small images (nearest neighbour) so that the fixed-size labels stay readable.
    """
    def enlarge(pixels: torch.Tensor) -> torch.Tensor:
        return pixels.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)

    canvas = enlarge((torch.as_tensor(image).clamp(0, 1) * 255).to(torch.uint8).cpu())
    layers = [("green", prediction, [p for p, _ in errors.found]), ("orange", prediction, [p for p, _ in errors.confused]),
              ("red", target, errors.missed), ("magenta", prediction, errors.false)]
    for color, source, indices in layers:
        if not indices:
            continue
        masks = enlarge(binary_masks(source["masks"][indices]).cpu())
        labels = [class_names[int(source["labels"][i])] for i in indices]
        boxes = torch.as_tensor(source["boxes"][indices]).float() * scale
        canvas = draw_masks_and_boxes(canvas, masks, boxes, color, labels, alpha=0.45)
    return canvas
