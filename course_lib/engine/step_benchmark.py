"""How long one training step takes: the model's variants timed in fresh processes, one after another."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from course_lib.engine import distributed
from course_lib.environment import model_device
from course_lib.engine.recipes import amp_setting, make_optimizer
from course_lib.scratch.roi import with_kernel_roi_align
from course_lib.structures.instances import batch_to_device
from course_lib.utils import timing

#: Training-step variants: which RoI pooler computes RoI Align, and in which precision.
TRAIN_STEP_VARIANTS = {
    "kernel_pooler": "torchvision's MultiScaleRoIAlign (per-sample kernel), float32",
    "separable_pooler": "course_lib.scratch.roi.SeparableMultiScaleRoIAlign (matrix products), float32",
    "separable_amp": "the same under autocast: bfloat16 on a CPU, float16 on CUDA",
    "separable_amp_1thread": "the same on 1 CPU thread",
    "separable_amp_2proc": "the same in 2 data-parallel processes, each on half the batch (DDP, course_lib.engine.distributed)",
}


def _step_seconds(model: nn.Module, batches: list, amp: bool, amp_dtype: torch.dtype) -> list[float]:
    """Seconds of each training step of ``model`` (in place) over ``batches``; under DDP each
    process takes its share of every batch and the gradients are averaged in backward."""
    rank, world = distributed.rank_and_world()
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = make_optimizer("adamw", [p for p in model.parameters() if p.requires_grad], lr=1e-5)
    device = model_device(model)
    seconds = []
    for images, targets in batches:
        share = len(images) // world
        images, targets = images[rank * share:(rank + 1) * share], targets[rank * share:(rank + 1) * share]
        with timing.Stopwatch(device) as step:
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                loss = sum(net(images, targets).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seconds.append(step.seconds)
    return seconds


def _step_seconds_to_file(model: nn.Module, batches: list, amp: bool, amp_dtype: torch.dtype, path: str) -> None:

    seconds = _step_seconds(model, batches, amp, amp_dtype)
    slowest = [max(t) for t in zip(*distributed.gather(seconds))]  # a step ends when every process is done
    if distributed.rank_and_world()[0] == 0:
        Path(path).write_text(json.dumps(slowest))


def training_step_benchmark(model: nn.Module, dataset: Sequence[tuple[Tensor, dict]], batch_size: int = 4,
                            warmup: int = 3, repeats: int = 20) -> dict:
    """Seconds per training step (forward with losses, backward, AdamW step) of each of
    :data:`TRAIN_STEP_VARIANTS`, on copies of ``model`` (a Mask R-CNN with RoI Align poolers).

    The last two run on a CPU with ``threads`` >= 2: ``separable_amp_1thread`` on one thread,
    ``separable_amp_2proc`` as two processes of ``threads // 2`` threads (``batch_size`` even)."""
    device = model_device(model)
    batches = [batch_to_device([dataset[(step * batch_size + i) % len(dataset)] for i in range(batch_size)], device)
               for step in range(warmup + repeats)]
    _, amp_dtype = amp_setting(True, device)
    threads = torch.get_num_threads()
    variants = [name for name in TRAIN_STEP_VARIANTS if not name.endswith(("1thread", "2proc"))
                or (device.type == "cpu" and threads >= 2 and batch_size % 2 == 0)]
    rows = []
    for name in variants:
        trial = copy.deepcopy(model).train()
        if name == "kernel_pooler":
            with_kernel_roi_align(trial)
        amp = "_amp" in name
        if name.endswith("2proc"):
            with tempfile.TemporaryDirectory() as folder:
                path = str(Path(folder) / "seconds.json")
                distributed.launch(_step_seconds_to_file, trial, batches, amp, amp_dtype, path,
                                   processes=2, threads_per_process=threads // 2)
                seconds = json.loads(Path(path).read_text())
            torch.set_num_threads(threads)
        else:
            torch.set_num_threads(1 if name.endswith("1thread") else threads)
            seconds = _step_seconds(trial, batches, amp, amp_dtype)
            torch.set_num_threads(threads)
        steps = timing.summary(seconds[warmup:])
        rows.append({"name": name, "description": TRAIN_STEP_VARIANTS[name], **steps.row(),
                     "images_per_s": batch_size / steps.median})
    for row in rows:
        row["speedup"] = rows[0]["median_ms"] / row["median_ms"]
    return {
        "what": "one training step (forward with losses, backward, AdamW step) per variant",
        "batch_size": batch_size, "repeats": repeats, **timing.machine_record(device), "threads": threads,
        "variants": rows,
    }


def training_step_table(results: dict) -> str:
    """A Markdown table of :func:`training_step_benchmark`'s variants."""
    lines = ["| variant | what changes | median ms/step | p90 ms | images/s | speed-up |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['description']} | {r['median_ms']:.0f} | {r['p90_ms']:.0f} | {r['images_per_s']:.1f} | "
              f"{r['speedup']:.2f}x |" for r in results["variants"]]
    return "\n".join(lines)
