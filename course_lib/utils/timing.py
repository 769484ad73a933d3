"""Timing tools: latency, time per stage and peak memory of a model's forward, on the CPU or a GPU,
and the machine's load around a measurement (a busy machine's timings are not written)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import threading
import time
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from course_lib.environment import model_device
from course_lib.errors import MachineBusy

#: The stages of Mask R-CNN's forward, in order (the order of ``course_lib.modeling.internals.trace``).
STAGES = ("transform", "backbone", "rpn", "box_head", "mask_head", "paste")


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def stage_timer(model: nn.Module) -> Iterator[dict[str, float]]:
    """Add the seconds each stage of ``model``'s forward takes to the yielded dict, while inside.

    Stages are timed with forward hooks on the submodules (``transform``, ``backbone``, ``rpn``,
    the box and mask RoI pools, heads and predictors) and by wrapping two methods: the box
    post-processing (per-class NMS) counts as ``box_head`` and ``transform.postprocess`` (resizing
    boxes and pasting 28x28 masks into the full image) as ``paste``. Every boundary synchronises
    the device, which costs a little overlap on a GPU: use it to see where time goes, and plain
    :func:`measure_latency` for the latency itself.
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


class PeakMemory:
    """Peak memory while inside: CUDA's allocator peak on a GPU, sampled process RSS on the CPU.

    ``megabytes`` is the peak above the level on entry (activations and workspaces, not weights).
    On the CPU the resident set size is read from ``/proc/self/statm`` every millisecond by a
    thread, after returning freed heap memory to the OS, so it is approximate and Linux-only
    (None elsewhere). Python's ``tracemalloc`` would
    not see it at all: tensors are allocated by torch's C++ allocator, not by Python.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.megabytes: float | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        elif _release_free_heap() and (start := _rss_bytes()) is not None:
            self._start, self._peak, self._running = start, start, True
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while self._running:
            self._peak = max(self._peak, _rss_bytes() or 0)
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.megabytes = (torch.cuda.max_memory_allocated(self.device) - self._start) / 1e6
        elif hasattr(self, "_thread"):
            self._running = False
            self._thread.join()
            self.megabytes = (self._peak - self._start) / 1e6


def _release_free_heap() -> bool:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``), so that the resident set size
    falls back after a forward and the next peak is measured from a clean level. True on glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0) or True)
    except (OSError, AttributeError):
        return False


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@torch.inference_mode()
def measure_latency(model: nn.Module, images: Sequence[Tensor], batch_size: int = 1, warmup: int = 2,
                    repeats: int = 10) -> list[float]:
    """Seconds per image of ``repeats`` timed calls, after ``warmup`` untimed ones.

    Each call runs the next ``batch_size`` images (cycling through ``images``); a call's time is
    divided by ``batch_size``.
    """
    device = model_device(model)
    batches = [[images[(i * batch_size + j) % len(images)].to(device) for j in range(batch_size)] for i in range(warmup + repeats)]
    times = []
    for i, batch in enumerate(batches):
        synchronize(device)
        start = time.perf_counter()
        model(batch)
        synchronize(device)
        if i >= warmup:
            times.append((time.perf_counter() - start) / batch_size)
    return times


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


def device_name(device: torch.device) -> str:
    """A readable name: the GPU's model, or the CPU's (``platform.processor()`` or /proc/cpuinfo)."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    name = platform.processor()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    return f"cpu: {name or platform.machine()} ({os.cpu_count()} logical cores)"


def load_average_1min() -> float:
    """The 1-minute load average: runnable processes, averaged; above the core count, work waits for a core."""
    return os.getloadavg()[0]


def checked_load(before: float, force: bool = False) -> dict:
    """The load record of a timing that started at load ``before``: ``{"load_average_1min": {before, after},
    "cores", "forced_under_load"}``, to merge into its results file.

    Raises :class:`course_lib.errors.MachineBusy` when the load before or now exceeds the core count,
    unless ``force`` (then recorded as ``forced_under_load``): other processes then share the cores
    and stretch every timing by a factor nobody can undo afterwards.
    """
    after, cores = load_average_1min(), os.cpu_count() or 1
    if max(before, after) > cores and not force:
        raise MachineBusy(f"load average {before:.1f} before, {after:.1f} after on {cores} cores: timings from a busy "
                          "machine are not written; rerun when it is quiet, or pass --force-loaded to record them anyway")
    return {"load_average_1min": {"before": before, "after": after}, "cores": cores, "forced_under_load": force}
