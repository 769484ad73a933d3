"""Eager and deployed variants in one benchmark: interleaved paired timings, then mask AP on the same images.

``bench``'s eager harness times each variant right after the unmodified model. Runtimes are
compared here in one loop instead: every round takes the next image and runs *every* predictor
on it, in an order that rotates from round to round, so a burst of background load or a slow
stretch of the clock hits all of them alike. A variant's ``speedup`` is the median over rounds of
the baseline's time divided by the variant's time on the same image in the same round.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import importlib.metadata
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Sequence

import numpy as np
import torch
import torchvision
from torch import Tensor, nn

from course_lib.deploy import benchmark, eager
from course_lib.utils import timing
from course_lib.deploy import variants as deploy_variants
from course_lib.modeling.maskrcnn import build

#: Packages whose versions a result records.
VERSIONED = ("torch", "torchvision", "onnx", "onnxruntime", "openvino", "nncf")


def is_deploy_name(name: str) -> bool:
    """True if ``name`` names a runtime variant (``ort``, ``ov_int8@fast``, ...), not an eager one."""
    return deploy_variants.parse(name) is not None


def random_weights_model(arch: str = "r50_fpn_v2", height: int = 512, width: int = 1024, detections: int = 20) -> nn.Module:
    """A Mask R-CNN with random weights (seed 0) sized for ``height x width`` inputs, for timing only.

    Random class scores pass any score threshold, so every image would fill the detection cap
    (100 in torchvision) and the mask head would do more work than on a real street; ``detections``
    caps it at a realistic count instead (Cityscapes averages about 20 instances per image).
    """
    torch.manual_seed(0)
    return build(arch, min_size=height, max_size=width, box_detections_per_img=detections).eval()


def cpu_features() -> list[str]:
    """The CPU's dot-product and matrix units INT8 and bfloat16 speed depends on (from /proc/cpuinfo)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
        return sorted(f for f in flags if f in {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16"})
    return []


def _version(package: str) -> str | None:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version(package)
    return None


def interleaved_latency(predictors: dict[str, Callable], images: Sequence[Tensor], warmup: int = 2,
                        repeats: int = 10) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Seconds per call of each predictor over ``repeats`` rounds (after ``warmup``), one image a round,
    every predictor once a round in a rotating order; and the number of detections of each call
    (the work of the mask head and the paste grows with it)."""
    names = list(predictors)
    times: dict[str, list[float]] = {name: [] for name in names}
    detections: dict[str, list[int]] = {name: [] for name in names}
    with torch.inference_mode():
        for round_index in range(warmup + repeats):
            image = images[round_index % len(images)]
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                output = predictors[name]([image])
                if round_index >= warmup:
                    times[name].append(time.perf_counter() - start)
                    detections[name].append(len(output[0]["boxes"]))
    return times, detections


def run_deploy_benchmark(model: nn.Module, dataset: Sequence[tuple[Tensor, dict]], names: Sequence[str], *,
                         calibration: Sequence[Tensor] = (), model_name: str = "model", data_name: str = "ToyCity val",
                         warmup: int = 2, repeats: int = 10, evaluate: bool = True,
                         progress: Callable[[str], None] | None = print) -> dict:
    """Eager variants (:mod:`course_lib.deploy.eager` names) and runtime variants (:mod:`course_lib.deploy.variants`
    names) timed interleaved on the CPU, with mask AP on all of ``dataset``; ``bench``'s result format.

    The unmodified eager model (``baseline``) always runs first and is every ratio's reference.
    INT8 variants calibrate on ``calibration`` (images from outside ``dataset``).
    """
    load_before = os.getloadavg()[0]
    model = model.eval().cpu()
    images = [image for image, _ in dataset]
    height, width = images[0].shape[-2:]
    names = ["baseline"] + [n for n in names if n != "baseline"]
    predictors, described, build_s, skipped = {}, {}, {}, {}
    with contextlib.ExitStack() as undo:
        for name in names:
            start = time.perf_counter()
            deployed = deploy_variants.parse(name)
            if deployed is not None:
                if progress:
                    progress(f"{name}: exporting, {deployed.describe()}")
                predictor, _ = deploy_variants.build(model, deployed, height, width, calibration, undo.enter_context(tempfile.TemporaryDirectory()))
                described[name] = deployed.describe()
            else:
                variant = eager.get(name)
                reason = variant.supported(torch.device("cpu")) or ("batches frames: time it with the eager harness"
                                                                     if variant.batch_size > 1 else None)
                if reason:
                    skipped[name] = reason
                    continue
                predictor = copy.deepcopy(model) if name != "baseline" else model
                undo.enter_context(eager.apply(predictor, variant))
                described[name] = f"PyTorch eager: {variant.describe()}"
            predictors[name], build_s[name] = predictor, time.perf_counter() - start
        if progress:
            progress(f"timing {len(predictors)} predictors interleaved: {warmup} + {repeats} rounds")
        times, detections = interleaved_latency(predictors, images, warmup, repeats)
        rows = []
        for name, predictor in predictors.items():
            latencies, base = times[name], times["baseline"]
            row = {
                "name": name,
                "description": described[name],
                "batch_size": 1,
                "median_ms": 1e3 * statistics.median(latencies),
                "paired_baseline_ms": 1e3 * statistics.median(base),
                "speedup": statistics.median(b / t for b, t in zip(base, latencies)),
                "speedup_of_medians": statistics.median(base) / statistics.median(latencies),
                "p90_ms": 1e3 * float(np.percentile(latencies, 90)),
                "fps": 1.0 / statistics.median(latencies),
                "build_s": build_s[name],
                "detections_per_image": float(np.mean(detections[name])),
            }
            if evaluate:
                if progress:
                    progress(f"{name}: mask AP on {len(dataset)} images")
                row.update(benchmark.mask_ap(predictor, dataset))
            rows.append(row)
    if evaluate:
        benchmark.add_ap_drops(rows)
    return {
        "model": model_name,
        "data": data_name,
        "images": len(dataset),
        "input_size": [int(height), int(width)],
        "device": timing.device_name(torch.device("cpu")),
        "cpu_features": cpu_features(),
        "threads": torch.get_num_threads(),
        "versions": {package: _version(package) for package in VERSIONED},
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m course_lib"] + sys.argv[1:]) if sys.argv[0].endswith("__main__.py") else " ".join(sys.argv),
        "timing": "interleaved: each round runs every variant on the same image, order rotating; "
                  "speedup = median over rounds of baseline time / variant time",
        "calibration_images": len(calibration),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "warmup": warmup,
        "repeats": repeats,
        "variants": rows,
        "skipped": skipped,
    }
