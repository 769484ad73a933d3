"""Evaluation: COCO box and mask AP with a per-class table, matched-mask IoU, and ``python -m course_lib eval``.

Predictions and targets are torchvision-format dicts, aligned by position (``predictions[i]`` is
the model output for the image whose target is ``targets[i]``):

- target: ``boxes`` [N, 4] xyxy, ``labels`` [N], ``masks`` [N, H, W] {0, 1}, optional ``iscrowd``
  [N] and ``area`` [N];
- prediction: ``boxes`` [P, 4], ``labels`` [P], ``scores`` [P], ``masks`` [P, 1, H, W] soft
  probabilities (binarised at 0.5, as torchvision's own COCO evaluation does).

pycocotools computes the numbers; this module only builds its COCO objects in memory. Crowd
targets (``iscrowd=1``, e.g. Cityscapes group regions) are ignore regions, exactly as in COCO: a
detection that falls on one is neither a true nor a false positive.

Related modules: :mod:`course_lib.failures` (missed / false / confused detections) and
:mod:`course_lib.cityscapes_eval` (the official Cityscapes instance evaluator).
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
from tqdm.auto import tqdm

from course_lib.classes import CLASSES
from course_lib.matching import match_pairs

#: Names of COCOeval.stats entries, in its order (maxDets 100 unless named).
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
MASK_THRESHOLD = 0.5


def binary_masks(masks: torch.Tensor) -> np.ndarray:
    """[N, H, W] or [N, 1, H, W] soft or binary masks -> [N, H, W] uint8 {0, 1} (threshold 0.5)."""
    masks = torch.as_tensor(masks)
    if masks.ndim == 4:
        masks = masks[:, 0]
    if masks.is_floating_point():
        masks = masks > MASK_THRESHOLD
    return masks.to(torch.uint8).cpu().numpy()


def encode_masks(masks: torch.Tensor) -> list[dict]:
    """Masks as in :func:`binary_masks` -> one COCO run-length encoding (RLE) per mask."""
    return mask_utils.encode(np.asfortranarray(binary_masks(masks).transpose(1, 2, 0)))


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
            rles = encode_masks(entry["masks"]) if iou_type == "segm" else None
            scores = torch.as_tensor(entry["scores"]).tolist()
            crowd = [0] * n
            # pycocotools assigns detections to area ranges by this number: the mask area for segm.
            area = mask_utils.area(rles) if rles is not None else box_areas
        else:
            needs_masks = "masks" in entry and (iou_type == "segm" or "area" not in entry)
            rles = encode_masks(entry["masks"]) if needs_masks else None
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
    """A plain-text summary and per-class table of :func:`coco_metrics` (or :func:`evaluate_model`) output."""
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


def mask_iou_matrix(pred_masks: torch.Tensor, gt_masks: torch.Tensor) -> np.ndarray:
    """IoU of every predicted mask with every target mask: float [P, G] (masks as in :func:`binary_masks`)."""
    if len(pred_masks) == 0 or len(gt_masks) == 0:
        return np.zeros((len(pred_masks), len(gt_masks)))
    ious = mask_utils.iou(encode_masks(pred_masks), encode_masks(gt_masks), [0] * len(gt_masks))
    return np.asarray(ious, dtype=np.float64).reshape(len(pred_masks), len(gt_masks))


def kept_indices(prediction: dict, score_threshold: float) -> torch.Tensor:
    """Indices of the predictions scoring at least ``score_threshold``."""
    return torch.nonzero(torch.as_tensor(prediction["scores"]) >= score_threshold).flatten()


def object_indices(target: dict) -> torch.Tensor:
    """Indices of the target instances that are objects, not crowd regions."""
    crowd = torch.as_tensor(target.get("iscrowd", torch.zeros(len(target["labels"]))))
    return torch.nonzero(crowd == 0).flatten()


def matched_mask_ious(
    predictions: Sequence[dict], targets: Sequence[dict], iou_threshold: float = 0.5, score_threshold: float = 0.5
) -> list[float]:
    """Mask IoU of every matched (prediction, target) pair of the same class.

    Predictions scoring under ``score_threshold`` are left out (the ones a user would see); within
    each image, predictions and targets of the same class are matched one-to-one by
    :func:`match_pairs`. Crowd targets are not objects and take no part.
    """
    matched = []
    for prediction, target in zip(predictions, targets):
        kept, objects = kept_indices(prediction, score_threshold), object_indices(target)
        pred_labels, gt_labels = prediction["labels"][kept], target["labels"][objects]
        ious = mask_iou_matrix(prediction["masks"][kept], target["masks"][objects])
        ious[(pred_labels[:, None] != gt_labels[None, :]).numpy()] = 0.0  # only same-class pairs
        matched += [float(ious[p, g]) for p, g in match_pairs(ious, iou_threshold)]
    return matched


def mean_matched_mask_iou(
    predictions: Sequence[dict], targets: Sequence[dict], iou_threshold: float = 0.5, score_threshold: float = 0.5
) -> float:
    """Mean of :func:`matched_mask_ious`: how well the masks that *are* found fit, which AP mixes
    with detection quality. NaN when nothing matched."""
    matched = matched_mask_ious(predictions, targets, iou_threshold, score_threshold)
    return float(np.mean(matched)) if matched else float("nan")


def maskness(masks: torch.Tensor) -> torch.Tensor:
    """[P, 1, H, W] soft masks -> [P]: each mask's mean probability over its pixels above 0.5 (0 if none).

    A training-free estimate of mask quality (SOLOv2's "maskness"): a confident, sharp mask scores
    near 1, a blurred one near 0.5. Mask R-CNN ranks detections by the box classifier's score,
    which says nothing about the mask; Mask Scoring R-CNN (Huang et al. 2019) learns a mask-IoU
    head for this, and multiplying the score by the maskness is its free approximation.
    """
    probs = masks.flatten(1)
    foreground = probs > MASK_THRESHOLD
    return (probs * foreground).sum(1) / foreground.sum(1).clamp(min=1)


@torch.inference_mode()
def predict(model: torch.nn.Module, dataset: torch.utils.data.Dataset, device: torch.device | str | None = None,
            batch_size: int = 2) -> tuple[list[dict], list[dict]]:
    """Run ``model`` over ``dataset``: (predictions, targets) on the CPU, in dataset order.

    Predicted masks are binarised at 0.5 and stored as uint8 [P, 1, H, W]: the soft float masks of
    a whole dataset would not fit in memory, and every metric here thresholds at 0.5 anyway.
    Each prediction also keeps ``maskness`` [P] (:func:`maskness` of the soft masks), so that
    detections can be re-ranked by ``scores * maskness`` without running the model again.
    """
    from course_lib.data import collate
    from course_lib.runtime import device as default_device

    device = torch.device(device) if device is not None else default_device()
    model.eval().to(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    predictions, targets = [], []
    for images, batch_targets in tqdm(loader, desc="evaluating", unit="batch"):
        for output in model([image.to(device) for image in images]):
            output = {key: value.cpu() for key, value in output.items()}
            output["maskness"] = maskness(output["masks"])
            output["masks"] = (output["masks"] > MASK_THRESHOLD).to(torch.uint8)
            predictions.append(output)
        targets += batch_targets
    return predictions, targets


def evaluate_model(model: torch.nn.Module, dataset: torch.utils.data.Dataset, device: torch.device | str | None = None,
                   batch_size: int = 2) -> tuple[dict, list[dict]]:
    """(metrics, predictions): :func:`coco_metrics` plus ``metrics["mask_iou"]`` (:func:`mean_matched_mask_iou`)."""
    predictions, targets = predict(model, dataset, device, batch_size)
    metrics = coco_metrics(predictions, targets)
    metrics["mask_iou"] = mean_matched_mask_iou(predictions, targets)
    return metrics, predictions

