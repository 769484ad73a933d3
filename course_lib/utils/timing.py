"""Timing tools: a clock that waits for the device, warm-up and repeated (interleaved) calls, the one
summary every results row reports (median, p90, mean, n), peak memory, and the machine record every
results file carries (device, CPU, threads, versions, date, command, load before and after).

Rules that make numbers trustworthy: warm up first (the first calls pay for lazy initialisation,
allocator growth and, on a GPU, kernel selection), synchronise the device before reading the clock
(CUDA calls return before the GPU is done), report the median and the 90th percentile rather than
the mean (one hiccup of the OS should not move the result), and compare variants in the same rounds
(a burst of background load then hits all of them alike). A busy machine's timings are not written.
Time per stage of Mask R-CNN's forward is :mod:`course_lib.modeling.stage_timing`.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime
import importlib.metadata
import math
import os
import platform
import sys
import threading
import time
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torchvision

from course_lib import environment
from course_lib.errors import MachineBusy

#: The CPU's flags that inference speed depends on: vector width, INT8 dot products, bfloat16 and matrix units.
INFERENCE_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")

#: Packages whose versions a results file records when they are installed.
VERSIONED = ("torch", "torchvision", "onnx", "onnxruntime", "openvino", "nncf")


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclasses.dataclass
class Stopwatch:
    """Seconds between entering and leaving, the device synchronised at both ends."""

    device: torch.device
    seconds: float = 0.0

    def __enter__(self) -> "Stopwatch":
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start


@dataclasses.dataclass
class Rounds:
    """What :func:`interleaved` measured, per name: ``seconds`` and ``outputs`` of the timed calls, ``warmup_s``
    the time of the warm-up calls together."""

    seconds: dict[str, list[float]]
    outputs: dict[str, list]
    warmup_s: dict[str, float]


def interleaved(calls: Mapping[str, Callable[[int], object]], device: torch.device, warmup: int = 2,
                repeats: int = 10) -> Rounds:
    """Call every ``calls[name](round)`` once per round, ``warmup`` untimed rounds then ``repeats`` timed ones,
    in an order that rotates from round to round, each call on its own :class:`Stopwatch`.

    Keep what a call returns small (a detection count, not the masks): the timed rounds' outputs are kept.
    """
    names = list(calls)
    rounds = Rounds({name: [] for name in names}, {name: [] for name in names}, {name: 0.0 for name in names})
    for index in range(warmup + repeats):
        shift = index % max(len(names), 1)
        for name in names[shift:] + names[:shift]:
            with Stopwatch(device) as clock:
                output = calls[name](index)
            if index < warmup:
                rounds.warmup_s[name] += clock.seconds
            else:
                rounds.seconds[name].append(clock.seconds)
                rounds.outputs[name].append(output)
    return rounds


def repeat(call: Callable[[int], object], device: torch.device, warmup: int = 2, repeats: int = 10) -> list[float]:
    """Seconds of each of ``repeats`` timed calls ``call(i)``, after ``warmup`` untimed ones (:func:`interleaved` of one)."""
    return interleaved({"call": call}, device, warmup, repeats).seconds["call"]


@dataclasses.dataclass(frozen=True)
class Summary:
    """The one summary of repeated timings: ``median``, ``p90`` (numpy's default, linear between ranks), ``mean``, ``n``."""

    median: float
    p90: float
    mean: float
    n: int

    def row(self) -> dict[str, float]:
        """The summary as a results row's fields, from seconds: ``median_ms``, ``p90_ms``, ``mean_ms``, ``fps``, ``n``."""
        return {"median_ms": 1e3 * self.median, "p90_ms": 1e3 * self.p90, "mean_ms": 1e3 * self.mean,
                "fps": 1.0 / self.median if self.median > 0 else None, "n": self.n}  # None: JSON has no infinity


def summary(seconds: Sequence[float]) -> Summary:
    """:class:`Summary` of ``seconds`` (any order, at least one value)."""
    if len(seconds) == 0:
        raise ValueError("summary of no timings: time at least one call")
    values = np.asarray(seconds, dtype=float)
    mean = math.fsum(values) / len(values)  # correctly rounded, so the same in any order
    return Summary(float(np.median(values)), float(np.percentile(values, 90)), mean, len(values))


def paired_speedup(reference: Sequence[float], seconds: Sequence[float]) -> float:
    """Median over rounds of ``reference[i] / seconds[i]``: the speed-up of calls made moments apart."""
    return float(np.median(np.asarray(reference, dtype=float) / np.asarray(seconds, dtype=float)))


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


def device_name(device: torch.device) -> str:
    """A readable name: ``cuda: <the GPU's model>``, or ``cpu: <the CPU's model> (N logical cores)``."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    info = environment.cpu_info()
    return f"cpu: {info.model if info else platform.processor() or platform.machine()} ({os.cpu_count()} logical cores)"


def command_line() -> str:
    """The command that runs this process, as a user would type it (``python -m course_lib ...`` for the CLI)."""
    if sys.argv and sys.argv[0].endswith("__main__.py"):
        return " ".join(["python -m course_lib"] + sys.argv[1:])
    return " ".join(["python"] + sys.argv) if sys.argv and sys.argv[0].endswith(".py") else " ".join(sys.argv)


def _version(package: str) -> str | None:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version(package)
    return None


def machine_record(device: torch.device, load_before: float | None = None, force: bool = False,
                   command: str | None = None) -> dict:
    """Where and when a measurement ran, the fields every results file carries: ``device``, ``cpu``,
    ``cpu_features`` (:data:`INFERENCE_FLAGS` the CPU has), ``cpu_bf16_units``, ``threads``, ``torch``,
    ``torchvision``, ``versions`` (of :data:`VERSIONED` that are installed), ``date`` (UTC), ``command``
    (:func:`command_line` unless given, e.g. by a script's ``main(argv)``).

    Pass ``load_before`` (:func:`load_average_1min` when the timing started) from a writer: the record then
    holds :func:`checked_load`'s fields and refuses (:class:`course_lib.errors.MachineBusy`) a busy machine
    unless ``force``.
    """
    info = environment.cpu_info()
    record = {
        "device": device_name(device),
        "cpu": device_name(torch.device("cpu")),
        "cpu_features": sorted(set(INFERENCE_FLAGS) & info.flags) if info else [],
        "cpu_bf16_units": environment.cpu_has_bf16_units(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "versions": {package: version for package in VERSIONED if (version := _version(package))},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command or command_line(),
    }
    if device.type == "cuda":
        record["cuda"], record["cudnn"] = torch.version.cuda, torch.backends.cudnn.version()
    return record if load_before is None else {**record, **checked_load(load_before, force)}


def load_average_1min() -> float:
    """The 1-minute load average: runnable processes, averaged; above the core count, work waits for a core."""
    return os.getloadavg()[0]


def checked_load(before: float, force: bool = False) -> dict:
    """The load record of a timing that started at load ``before``: ``{"load_average_1min": {before, after},
    "cores", "forced_under_load"}``, to merge into its results file.

    Raises :class:`course_lib.errors.MachineBusy` when the load before or now exceeds the core count,
    unless ``force`` (``forced_under_load`` then says whether it was busy): other processes then share
    the cores and stretch every timing by a factor nobody can undo afterwards.
    """
    after, cores = load_average_1min(), os.cpu_count() or 1
    busy = max(before, after) > cores
    if busy and not force:
        raise MachineBusy(f"load average {before:.1f} before, {after:.1f} after on {cores} cores: timings from a busy "
                          "machine are not written; rerun when it is quiet, or pass --force-loaded to record them anyway")
    return {"load_average_1min": {"before": before, "after": after}, "cores": cores, "forced_under_load": busy}
