"""Benchmark inference variants: latency, FPS, time per stage, peak memory and mask AP, side by side.

Timing rules that make numbers trustworthy: warm up first (the first calls pay for lazy
initialisation, allocator growth and, on a GPU, kernel selection), synchronise the device before
reading the clock (CUDA calls return before the GPU is done), and report the median and the 90th
percentile rather than the mean (a single hiccup of the OS should not move the result).

``python -m course_lib bench --help`` runs it from the shell (:mod:`course_lib.cli.bench`); notebooks
call :func:`run_benchmark` and read committed results with :func:`course_lib.results.load_results`.
Training steps are timed by :mod:`course_lib.engine.step_benchmark`, exported runtimes by
:mod:`course_lib.deploy.interleaved`.
"""

from __future__ import annotations

import datetime
import statistics
import time
from typing import Callable, Sequence

import numpy as np
import torch
import torchvision
from torch import Tensor, nn

from course_lib import environment
from course_lib.data.toycity import clip, held_out
from course_lib.deploy import eager
from course_lib.utils.timing import device_name, measure_latency, measure_stages
from course_lib.environment import model_device
from course_lib.evaluation.inference import inference_on_dataset
from course_lib.evaluation.coco_eval import coco_metrics
from course_lib.tracking.track_metrics import noisy_detections
from course_lib.tracking.track import Tracker, tracks_to_frame

# --------------------------------------------------------------------------- measuring


@torch.inference_mode()
def mask_ap(model: nn.Module, dataset: Sequence[tuple[Tensor, dict]], batch_size: int = 1) -> dict[str, float]:
    """COCO mask and box AP of ``model`` (where it is) on ``(image, target)`` pairs: ``{"mask_AP", "mask_AP50", "box_AP"}``."""
    predictions, targets = inference_on_dataset(model, dataset, model_device(model), batch_size, progress=False)
    metrics = coco_metrics(predictions, targets)
    return {"mask_AP": metrics["segm"]["AP"], "mask_AP50": metrics["segm"]["AP50"], "box_AP": metrics["bbox"]["AP"]}


# --------------------------------------------------------------------------- the benchmark


def add_ap_drops(rows: list[dict]) -> None:
    """Give each row ``mask_AP_drop``: how many AP points its mask AP lies below the first row's."""
    for row in rows:
        row["mask_AP_drop"] = 100 * (rows[0]["mask_AP"] - row["mask_AP"])


def toycity_val(length: int, height: int = 128, width: int = 256) -> list[tuple[Tensor, dict]]:
    """:func:`course_lib.data.toycity.held_out` as a list of ``(image, target)``, rendered once for repeated timing."""
    dataset = held_out(length, height, width)
    return [dataset[i] for i in range(length)]


def run_benchmark(
    model: nn.Module,
    dataset: Sequence[tuple[Tensor, dict]],
    variants: Sequence[str | eager.Variant] = ("baseline",),
    *,
    model_name: str = "model",
    data_name: str = "ToyCity val",
    warmup: int = 2,
    repeats: int = 10,
    stage_repeats: int = 3,
    evaluate: bool = True,
    progress: Callable[[str], None] | None = print,
) -> dict:
    """Measure every variant on the same images; return a JSON-ready dict (see :func:`course_lib.results.save_results`).

    Latency is timed on the images of ``dataset``; mask AP is computed on all of it (skip with
    ``evaluate=False``). Variants the model's device cannot run are listed under ``skipped`` with
    the reason. ``speedup`` is relative to the unmodified model timed just before each variant
    (``paired_baseline_ms``); ``mask_AP_drop`` (AP points) to the first variant's mask AP.
    """
    device = model_device(model)
    model.eval()
    images = [image for image, _ in dataset]
    rows, skipped = [], {}
    for item in variants:
        variant = eager.get(item) if isinstance(item, str) else item
        reason = variant.supported(device)
        if reason:
            skipped[variant.name] = reason
            continue
        if progress:
            progress(f"{variant.name}: {variant.describe()}")
        # The unmodified model, timed right before the variant: on a shared machine the load
        # drifts over minutes, so a speed-up is only fair against a baseline timed alongside.
        paired = measure_latency(model, images, 1, warmup, repeats)
        with eager.apply(model, variant):
            compile_start = time.perf_counter()
            latencies = measure_latency(model, images, variant.batch_size, warmup, repeats)
            first_calls_s = time.perf_counter() - compile_start - sum(latencies) * variant.batch_size
            stages, memory = measure_stages(model, images, stage_repeats)
            row = {
                "name": variant.name,
                "description": variant.describe(),
                "batch_size": variant.batch_size,
                "model_input_size": list(resized_size(model, images[0])),
                "median_ms": 1e3 * statistics.median(latencies),
                "paired_baseline_ms": 1e3 * statistics.median(paired),
                "speedup": statistics.median(paired) / statistics.median(latencies),
                "p90_ms": 1e3 * float(np.percentile(latencies, 90)),
                "fps": 1.0 / statistics.median(latencies),
                "warmup_s": first_calls_s,
                "stages_ms": {stage: 1e3 * seconds for stage, seconds in stages.items()},
                "peak_memory_mb": memory,
            }
            if evaluate:
                row.update(mask_ap(model, dataset, variant.batch_size))
        rows.append(row)
    if evaluate:
        add_ap_drops(rows)
    return {
        "model": model_name,
        "data": data_name,
        "images": len(dataset),
        "input_size": list(images[0].shape[-2:]),
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "cpu_bf16_units": environment.cpu_has_bf16_units(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "warmup": warmup,
        "repeats": repeats,
        "variants": rows,
        "skipped": skipped,
    }


def resized_size(model: nn.Module, image: Tensor) -> tuple[int, int]:
    """(h, w) the model's transform resizes ``image`` to (before padding)."""
    with torch.inference_mode():
        return tuple(model.transform([image.to(model_device(model))])[0].image_sizes[0])


def tracker_overhead(num_objects: int = 40, num_frames: int = 60, height: int = 512, width: int = 1024,
                     seed: int = 0) -> dict:
    """Milliseconds per frame of :class:`course_lib.tracking.track.Tracker` alone, on a crowded ToyCity clip.

    Detections are the clip's ground truth with noise (:func:`~course_lib.tracking.track_metrics.noisy_detections`), so no
    model runs. ``update_ms`` is matching, state updates and smoothing; ``paste_ms`` the extra cost
    of turning the reported tracks into full-resolution masks (``tracks_to_frame``).
    """
    targets = [target for _, target in clip(seed, num_frames, height, width, num_objects=num_objects, fps=25)]
    detections = noisy_detections(targets, seed=seed)
    tracker = Tracker()
    update, paste = [], []
    for frame in detections:
        start = time.perf_counter()
        tracks = tracker.update(frame)
        middle = time.perf_counter()
        tracks_to_frame(tracks, height, width)
        update.append(middle - start)
        paste.append(time.perf_counter() - middle)
    return {
        "instances_per_frame": float(np.mean([len(d["boxes"]) for d in detections])),
        "frame_size": [height, width],
        "update_ms": 1e3 * statistics.median(update[2:]),  # the first frames only create tracks
        "update_p90_ms": 1e3 * float(np.percentile(update[2:], 90)),
        "paste_ms": 1e3 * statistics.median(paste[2:]),
        "threads": torch.get_num_threads(),
        "device": device_name(torch.device("cpu")),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m course_lib bench --tracker",
    }
