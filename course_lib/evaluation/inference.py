"""The one prediction loop: a model over a stream of images or a dataset, in batches, outputs on the CPU.

Evaluation (:func:`inference_on_dataset`), the benchmarks' mask AP and the video annotator
(:func:`course_lib.tracking.annotate.predict_frames`) all run :func:`predict_batches`.
"""

from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from course_lib.evaluation.coco_eval import coco_metrics
from course_lib.evaluation.matched_masks import maskness, mean_matched_mask_iou
from course_lib.environment import device as default_device, model_device
from course_lib.structures.masks import MASK_THRESHOLD

Item = TypeVar("Item")


def batched(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.inference_mode()
def predict_batches(model: nn.Module, images: Iterable[Tensor], batch_size: int = 1) -> Iterator[dict[str, Tensor]]:
    """One prediction dict per image, on the CPU, in order; ``model`` runs on ``batch_size`` images at a time.

    ``images``: ``[3, H, W]`` float in [0, 1], or uint8 (converted on the model's device, where the
    copy is a quarter the size). ``model``: a Mask R-CNN in eval mode, or an exported predictor.
    """
    device = model_device(model)
    for batch in batched(images, batch_size):
        inputs = [image.to(device) for image in batch]
        inputs = [image.float() / 255 if image.dtype == torch.uint8 else image for image in inputs]
        for output in model(inputs):
            yield {key: value.cpu() for key, value in output.items()}


def inference_on_dataset(model: nn.Module, dataset: torch.utils.data.Dataset, device: torch.device | str | None = None,
                         batch_size: int = 2, progress: bool = True) -> tuple[list[dict], list[dict]]:
    """Run ``model`` over ``dataset`` of ``(image, target)``: (predictions, targets) on the CPU, in dataset order.

    ``device``: where to run an ``nn.Module`` (moved there; default :func:`course_lib.environment.device`);
    an exported predictor runs where it is. Predicted masks are binarised at 0.5 and stored as uint8
    ``[P, 1, H, W]``: the soft float masks of a whole dataset would not fit in memory, and every
    metric here thresholds at 0.5 anyway. Each prediction also keeps ``maskness`` ``[P]``
    (:func:`~course_lib.evaluation.matched_masks.maskness` of the soft masks), so that detections can
    be re-ranked by ``scores * maskness`` without running the model again.
    """
    if isinstance(model, nn.Module) and any(True for _ in model.parameters()):
        model.to(torch.device(device) if device is not None else default_device())
    model.eval()
    targets: list[dict] = []

    def images() -> Iterator[Tensor]:
        for index in range(len(dataset)):
            image, target = dataset[index]
            targets.append(target)
            yield image

    predictions = []
    stream = predict_batches(model, images(), batch_size)
    for output in tqdm(stream, total=len(dataset), desc="predicting", unit="image", disable=not progress):
        output["maskness"] = maskness(output["masks"])
        output["masks"] = (output["masks"] > MASK_THRESHOLD).to(torch.uint8)
        predictions.append(output)
    return predictions, targets


def evaluate_model(model: nn.Module, dataset: torch.utils.data.Dataset, device: torch.device | str | None = None,
                   batch_size: int = 2) -> tuple[dict, list[dict]]:
    """(metrics, predictions): :func:`~course_lib.evaluation.coco_eval.coco_metrics` plus
    ``metrics["mask_iou"]`` (:func:`~course_lib.evaluation.matched_masks.mean_matched_mask_iou`)."""
    predictions, targets = inference_on_dataset(model, dataset, device, batch_size)
    metrics = coco_metrics(predictions, targets)
    metrics["mask_iou"] = mean_matched_mask_iou(predictions, targets)
    return metrics, predictions
