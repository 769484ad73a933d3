"""COCO box and mask AP with a per-class table (the command line is :mod:`course_lib.cli.evaluate`).

Predictions and targets are torchvision-format dicts, aligned by position (``predictions[i]`` is
the model output for the image whose target is ``targets[i]``):

- target: ``boxes`` [N, 4] xyxy, ``labels`` [N], ``masks`` [N, H, W] {0, 1}, optional ``iscrowd``
  [N] and ``area`` [N];
- prediction: ``boxes`` [P, 4], ``labels`` [P], ``scores`` [P], ``masks`` [P, 1, H, W] soft
  probabilities (binarised at 0.5, as torchvision's own COCO evaluation does).

pycocotools computes the numbers; this module only builds its COCO objects in memory. Crowd
targets (``iscrowd=1``, e.g. Cityscapes group regions) are ignore regions, exactly as in COCO: a
detection that falls on one is neither a true nor a false positive.

Related modules: :mod:`course_lib.evaluation.failures` (missed / false / confused detections) and
:mod:`course_lib.evaluation.cityscapes_eval` (the official Cityscapes instance evaluator).
"""

from __future__ import annotations

import contextlib
import io
from typing import Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course_lib.classes import CLASSES
from course_lib.structures.masks import encode_rle

#: Names of COCOeval.stats entries, in its order (maxDets 100 unless named).
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _image_size(target: dict) -> tuple[int, int]:
    """(H, W) of a target's image, from its masks or, for box-only targets, the boxes' canvas."""
    if "masks" in target:
        return tuple(target["masks"].shape[-2:])
    canvas = getattr(target["boxes"], "canvas_size", None)
    if canvas is None:
        raise ValueError("a target needs 'masks' or tv_tensors.BoundingBoxes boxes to know its image size")
    return tuple(canvas)


def _xywh(boxes: torch.Tensor) -> list[list[float]]:
    """[N, 4] xyxy -> COCO's [x, y, width, height] lists."""
    boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    return torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()


def _coco(images: list[dict], categories: list[dict], annotations: list[dict]) -> COCO:
    """A pycocotools COCO object built in memory (no JSON file)."""
    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _annotations(entries: Sequence[dict], iou_type: str, is_prediction: bool) -> list[dict]:
    """COCO annotation dicts for all images; image ids are list positions."""
    annotations = []
    for image_id, entry in enumerate(entries):
        n = len(entry["labels"])
        if n == 0:
            continue
        labels = torch.as_tensor(entry["labels"]).tolist()
        boxes = _xywh(entry["boxes"])
        box_areas = [w * h for _, _, w, h in boxes]
        if is_prediction:
            rles = encode_rle(entry["masks"]) if iou_type == "segm" else None
            scores = torch.as_tensor(entry["scores"]).tolist()
            crowd = [0] * n
            # pycocotools assigns detections to area ranges by this number: the mask area for segm.
            area = mask_utils.area(rles) if rles is not None else box_areas
        else:
            needs_masks = "masks" in entry and (iou_type == "segm" or "area" not in entry)
            rles = encode_rle(entry["masks"]) if needs_masks else None
            crowd = torch.as_tensor(entry.get("iscrowd", torch.zeros(n))).tolist()
            area = (torch.as_tensor(entry["area"]).tolist() if "area" in entry
                    else mask_utils.area(rles) if rles is not None else box_areas)
        for k in range(n):
            annotation = {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(labels[k]),
                          "bbox": boxes[k], "area": float(area[k]), "iscrowd": int(crowd[k])}
            if rles is not None:
                annotation["segmentation"] = rles[k]
            if is_prediction:
                annotation["score"] = float(scores[k])
            annotations.append(annotation)
    return annotations


def _nan_if_undefined(value: float) -> float:
    """pycocotools writes -1 where a metric is undefined (no ground truth): use NaN instead."""
    return float("nan") if value < 0 else float(value)


def _mean_precision(precision: np.ndarray) -> float:
    """Mean of the defined (> -1) entries, NaN when none is defined."""
    defined = precision[precision > -1]
    return float(defined.mean()) if defined.size else float("nan")


def _per_class(evaluator: COCOeval, class_names: Sequence[str], gt: COCO) -> dict[str, dict]:
    """AP, AP50, AP75 and ground-truth count per class from ``evaluator.eval['precision']``.

    precision has shape [T=10 IoU thresholds, R=101 recall points, K classes, A=4 area ranges,
    M=3 max-detection settings]; area 'all' is index 0, maxDets=100 is index -1. Entries of -1
    mark recall points that were never reached or classes without ground truth.
    """
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    thresholds = evaluator.params.iouThrs
    table = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        table[class_names[category_id]] = {
            "AP": _mean_precision(precision[:, :, k]),
            "AP50": _mean_precision(precision[np.isclose(thresholds, 0.5), :, k]),
            "AP75": _mean_precision(precision[np.isclose(thresholds, 0.75), :, k]),
            "n_gt": len(gt.getAnnIds(catIds=[category_id], iscrowd=False)),
        }
    return table


def coco_metrics(
    predictions: Sequence[dict],
    targets: Sequence[dict],
    class_names: Sequence[str] = CLASSES,
    iou_types: Sequence[str] = ("bbox", "segm"),
) -> dict[str, dict]:
    """COCO AP/AR for each IoU type plus a per-class table.

    Returns ``{"bbox": {"AP": .., "AP50": .., ..., "AR100": .., "per_class": {name: {"AP", "AP50",
    "AP75", "n_gt"}}}, "segm": {...}}``. Undefined values (e.g. no ground truth) are NaN.
    Class index 0 (background) is not a category.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets: they must be aligned")
    images = [{"id": i, "height": h, "width": w} for i, (h, w) in enumerate(map(_image_size, targets))]
    categories = [{"id": i, "name": name} for i, name in enumerate(class_names) if i > 0]
    results = {}
    for iou_type in iou_types:
        gt = _coco(images, categories, _annotations(targets, iou_type, is_prediction=False))
        dt = _coco(images, categories, _annotations(predictions, iou_type, is_prediction=True))
        evaluator = COCOeval(gt, dt, iouType=iou_type)
        with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints progress and its table
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        metrics = {name: _nan_if_undefined(v) for name, v in zip(STAT_NAMES, evaluator.stats)}
        metrics["per_class"] = _per_class(evaluator, class_names, gt)
        results[iou_type] = metrics
    return results


def format_metrics(metrics: dict) -> str:
    """A plain-text summary and per-class table of :func:`coco_metrics` (or :func:`~course_lib.evaluation.inference.evaluate_model`) output."""
    by_type = {iou_type: m for iou_type, m in metrics.items() if isinstance(m, dict)}
    lines = [f"{iou_type:5s} " + "  ".join(f"{k} {m[k]:.3f}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"))
             for iou_type, m in by_type.items()]
    if "mask_iou" in metrics:
        lines.append(f"mean mask IoU of matched pairs: {metrics['mask_iou']:.3f}")
    lines.append(f"{'class':12s} {'n_gt':>5s} " + " ".join(f"{t + ' AP':>8s} {t + ' AP50':>9s}" for t in by_type))
    first = next(iter(by_type.values()))
    for name, row in first["per_class"].items():
        cells = " ".join(f"{m['per_class'][name]['AP']:8.3f} {m['per_class'][name]['AP50']:9.3f}" for m in by_type.values())
        lines.append(f"{name:12s} {row['n_gt']:5d} {cells}")
    return "\n".join(lines)


