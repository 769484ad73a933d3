"""Time per stage of a torchvision Mask R-CNN's forward: hooks on the submodules ``GeneralizedRCNN.forward``
calls, in the order :mod:`course_lib.modeling.internals` replays them. The clocks are
:mod:`course_lib.utils.timing`'s; what a stage is belongs to the model, so it lives here."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from course_lib.environment import model_device
from course_lib.utils.timing import PeakMemory, synchronize

#: The stages of Mask R-CNN's forward, in order (the order of ``course_lib.modeling.internals.trace``).
STAGES = ("transform", "backbone", "rpn", "box_head", "mask_head", "paste")


@contextlib.contextmanager
def stage_timer(model: nn.Module) -> Iterator[dict[str, float]]:
    """Add the seconds each stage of ``model``'s forward takes to the yielded dict, while inside.

    Stages are timed with forward hooks on the submodules (``transform``, ``backbone``, ``rpn``,
    the box and mask RoI pools, heads and predictors) and by wrapping two methods: the box
    post-processing (per-class NMS) counts as ``box_head`` and ``transform.postprocess`` (resizing
    boxes and pasting 28x28 masks into the full image) as ``paste``. Every boundary synchronises
    the device, which costs a little overlap on a GPU: use it to see where time goes, and
    :func:`course_lib.utils.timing.repeat` for the latency itself.
    """
    device = model_device(model)
    totals = {stage: 0.0 for stage in STAGES}
    heads = model.roi_heads
    modules = {
        "transform": [model.transform],
        "backbone": [model.backbone],
        "rpn": [model.rpn],
        "box_head": [heads.box_roi_pool, heads.box_head, heads.box_predictor],
        "mask_head": [heads.mask_roi_pool, heads.mask_head, heads.mask_predictor],
    }
    handles, starts = [], {}  # starts: id(module) -> clock at its forward's start
    for stage, stage_modules in modules.items():
        for module in stage_modules:
            handles.append(module.register_forward_pre_hook(_start_clock(device, starts)))
            handles.append(module.register_forward_hook(_stop_clock(device, starts, totals, stage)))
    methods = [(heads, "postprocess_detections", "box_head"), (model.transform, "postprocess", "paste")]
    for owner, name, stage in methods:
        setattr(owner, name, _timed(getattr(owner, name), device, totals, stage))
    try:
        yield totals
    finally:
        for handle in handles:
            handle.remove()
        for owner, name, _ in methods:
            del owner.__dict__[name]  # the class's method shows through again


def _start_clock(device: torch.device, starts: dict[int, float]) -> Callable:
    def hook(module: nn.Module, args) -> None:
        synchronize(device)
        starts[id(module)] = time.perf_counter()

    return hook


def _stop_clock(device: torch.device, starts: dict[int, float], totals: dict[str, float], stage: str) -> Callable:
    def hook(module: nn.Module, args, output) -> None:
        synchronize(device)
        totals[stage] += time.perf_counter() - starts.pop(id(module))

    return hook


def _timed(method: Callable, device: torch.device, totals: dict[str, float], stage: str) -> Callable:
    def timed(*args, **kwargs):
        synchronize(device)
        start = time.perf_counter()
        result = method(*args, **kwargs)
        synchronize(device)
        totals[stage] += time.perf_counter() - start
        return result

    return timed


@torch.inference_mode()
def measure_stages(model: nn.Module, images: Sequence[Tensor], repeats: int = 3) -> tuple[dict[str, float], float | None]:
    """(mean seconds per image for each stage of :data:`STAGES`, peak memory in MB) over ``repeats`` images."""
    device = model_device(model)
    inputs = [images[i % len(images)].to(device) for i in range(repeats)]
    model(inputs[:1])  # warm-up outside the clock
    with stage_timer(model) as totals, PeakMemory(device) as memory:
        for image in inputs:
            model([image])
    return {stage: seconds / repeats for stage, seconds in totals.items()}, memory.megabytes
