"""Benchmark inference variants: latency, FPS, time per stage, peak memory and mask AP, side by side.

Timing rules that make numbers trustworthy: warm up first (the first calls pay for lazy
initialisation, allocator growth and, on a GPU, kernel selection), synchronise the device before
reading the clock (CUDA calls return before the GPU is done), and report the median and the 90th
percentile rather than the mean (a single hiccup of the OS should not move the result).

``python -m course_lib bench --help`` runs it from the shell; notebooks call :func:`run_benchmark`
and read committed results with :func:`load_results`. ``--train-step`` times training steps instead
(:func:`training_step_benchmark`: the RoI pooler and the precision, the two levers on a CPU).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import datetime
import json
import os
import platform
import statistics
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torchvision
from torch import Tensor, nn

from course_lib import runtime, speed
from course_lib.atomic import write_json

#: The stages of Mask R-CNN's forward, in order (the order of ``course_lib.inspect.trace``).
STAGES = ("transform", "backbone", "rpn", "box_head", "mask_head", "paste")
#: Held-out ToyCity scenes: the seeds ``data_scripts/train_toycity.py`` evaluates the model on.
RESULTS_DIR = "assets/results"


# --------------------------------------------------------------------------- measuring


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_device(model: nn.Module) -> torch.device:
    """Where ``model`` computes: its parameters' device, or the ``device`` of a parameter-free predictor
    (an exported model behind the same call, :class:`course_lib.deploy.predictor.RuntimePredictor`)."""
    return model.device if isinstance(getattr(model, "device", None), torch.device) else next(model.parameters()).device


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
    device = _model_device(model)
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
    device = _model_device(model)
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
    device = _model_device(model)
    inputs = [images[i % len(images)].to(device) for i in range(repeats)]
    model(inputs[:1])  # warm-up outside the clock
    with stage_timer(model) as totals, PeakMemory(device) as memory:
        for image in inputs:
            model([image])
    return {stage: seconds / repeats for stage, seconds in totals.items()}, memory.megabytes


@torch.inference_mode()
def mask_ap(model: nn.Module, dataset: Sequence[tuple[Tensor, dict]], batch_size: int = 1) -> dict[str, float]:
    """COCO mask and box AP of ``model`` on ``(image, target)`` pairs: ``{"mask_AP", "mask_AP50", "box_AP"}``."""
    from course_lib.evaluate import MASK_THRESHOLD, coco_metrics

    device = _model_device(model)
    predictions = []
    for start in range(0, len(dataset), batch_size):
        images = [image.to(device) for image, _ in dataset[start : start + batch_size]]
        for output in model(images):
            output = {key: value.cpu() for key, value in output.items()}
            output["masks"] = (output["masks"] > MASK_THRESHOLD).to(torch.uint8)
            predictions.append(output)
    metrics = coco_metrics(predictions, [target for _, target in dataset])
    return {"mask_AP": metrics["segm"]["AP"], "mask_AP50": metrics["segm"]["AP50"], "box_AP": metrics["bbox"]["AP"]}


# --------------------------------------------------------------------------- the benchmark


def toycity_val(length: int, height: int = 128, width: int = 256) -> list[tuple[Tensor, dict]]:
    """:func:`course_lib.toycity.held_out` as a list of ``(image, target)``, rendered once for repeated timing."""
    from course_lib.toycity import held_out

    dataset = held_out(length, height, width)
    return [dataset[i] for i in range(length)]


def run_benchmark(
    model: nn.Module,
    dataset: Sequence[tuple[Tensor, dict]],
    variants: Sequence[str | speed.Variant] = ("baseline",),
    *,
    model_name: str = "model",
    data_name: str = "ToyCity val",
    warmup: int = 2,
    repeats: int = 10,
    stage_repeats: int = 3,
    evaluate: bool = True,
    progress: Callable[[str], None] | None = print,
) -> dict:
    """Measure every variant on the same images; return a JSON-ready dict (see :func:`save_results`).

    Latency is timed on the images of ``dataset``; mask AP is computed on all of it (skip with
    ``evaluate=False``). Variants the model's device cannot run are listed under ``skipped`` with
    the reason. ``speedup`` is relative to the unmodified model timed just before each variant
    (``paired_baseline_ms``); ``mask_AP_drop`` (AP points) to the first variant's mask AP.
    """
    device = _model_device(model)
    model.eval()
    images = [image for image, _ in dataset]
    rows, skipped = [], {}
    for item in variants:
        variant = speed.get(item) if isinstance(item, str) else item
        reason = variant.supported(device)
        if reason:
            skipped[variant.name] = reason
            continue
        if progress:
            progress(f"{variant.name}: {variant.describe()}")
        # The unmodified model, timed right before the variant: on a shared machine the load
        # drifts over minutes, so a speed-up is only fair against a baseline timed alongside.
        paired = measure_latency(model, images, 1, warmup, repeats)
        with speed.apply(model, variant):
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
        for row in rows:
            row["mask_AP_drop"] = 100 * (rows[0]["mask_AP"] - row["mask_AP"])  # in AP points
    return {
        "model": model_name,
        "data": data_name,
        "images": len(dataset),
        "input_size": list(images[0].shape[-2:]),
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "cpu_bf16_units": runtime.cpu_has_bf16_units(),
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
        return tuple(model.transform([image.to(_model_device(model))])[0].image_sizes[0])


def device_name(device: torch.device) -> str:
    """A readable name: the GPU's model, or the CPU's (``platform.processor()`` or /proc/cpuinfo)."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    name = platform.processor()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    return f"cpu: {name or platform.machine()} ({os.cpu_count()} logical cores)"


def tracker_overhead(num_objects: int = 40, num_frames: int = 60, height: int = 512, width: int = 1024,
                     seed: int = 0) -> dict:
    """Milliseconds per frame of :class:`course_lib.track.Tracker` alone, on a crowded ToyCity clip.

    Detections are the clip's ground truth with noise (``track_eval.noisy_detections``), so no
    model runs. ``update_ms`` is matching, state updates and smoothing; ``paste_ms`` the extra cost
    of turning the reported tracks into full-resolution masks (``tracks_to_frame``).
    """
    from course_lib.toycity import clip
    from course_lib.track import Tracker, tracks_to_frame
    from course_lib.track_eval import noisy_detections

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


#: Training-step variants: which RoI pooler computes RoI Align, and in which precision.
TRAIN_STEP_VARIANTS = {
    "kernel_pooler": "torchvision's MultiScaleRoIAlign (per-sample kernel), float32",
    "separable_pooler": "course_lib.roi.SeparableMultiScaleRoIAlign (matrix products), float32",
    "separable_amp": "the same under autocast: bfloat16 on a CPU, float16 on CUDA",
    "separable_amp_1thread": "the same on 1 CPU thread",
    "separable_amp_2proc": "the same in 2 data-parallel processes, each on half the batch (DDP, course_lib.distributed)",
}


def _step_seconds(model: nn.Module, batches: list, amp: bool, amp_dtype: torch.dtype) -> list[float]:
    """Seconds of each training step of ``model`` (in place) over ``batches``; under DDP each
    process takes its share of every batch and the gradients are averaged in backward."""
    from course_lib import distributed
    from course_lib.train import make_optimizer

    rank, world = distributed.rank_and_world()
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = make_optimizer("adamw", [p for p in model.parameters() if p.requires_grad], lr=1e-5)
    device = _model_device(model)
    seconds = []
    for images, targets in batches:
        share = len(images) // world
        images, targets = images[rank * share:(rank + 1) * share], targets[rank * share:(rank + 1) * share]
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            loss = sum(net(images, targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def _step_seconds_to_file(model: nn.Module, batches: list, amp: bool, amp_dtype: torch.dtype, path: str) -> None:
    from course_lib import distributed

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
    import tempfile

    from torchvision.ops import MultiScaleRoIAlign

    from course_lib import distributed
    from course_lib.roi import SeparableMultiScaleRoIAlign
    from course_lib.train import amp_setting, collate

    device = _model_device(model)
    batches = [collate([dataset[(step * batch_size + i) % len(dataset)] for i in range(batch_size)], device)
               for step in range(warmup + repeats)]
    _, amp_dtype = amp_setting(True, device)
    threads = torch.get_num_threads()
    variants = [name for name in TRAIN_STEP_VARIANTS if not name.endswith(("1thread", "2proc"))
                or (device.type == "cpu" and threads >= 2 and batch_size % 2 == 0)]
    rows = []
    for name in variants:
        trial = copy.deepcopy(model).train()
        if name == "kernel_pooler":
            for module in trial.roi_heads.modules():
                if isinstance(module, SeparableMultiScaleRoIAlign):
                    module.__class__ = MultiScaleRoIAlign  # the parent class: same settings, kernel forward
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
        median = statistics.median(seconds[warmup:])
        rows.append({"name": name, "description": TRAIN_STEP_VARIANTS[name], "median_ms": 1e3 * median,
                     "p90_ms": 1e3 * float(np.percentile(seconds[warmup:], 90)), "images_per_s": batch_size / median})
    for row in rows:
        row["speedup"] = rows[0]["median_ms"] / row["median_ms"]
    return {
        "what": "one training step (forward with losses, backward, AdamW step) per variant",
        "batch_size": batch_size, "repeats": repeats, "threads": threads,
        "device": device_name(device), "bf16_units": runtime.cpu_has_bf16_units() if device.type == "cpu" else None,
        "torch": torch.__version__, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "variants": rows,
    }


def training_step_table(results: dict) -> str:
    """A Markdown table of :func:`training_step_benchmark`'s variants."""
    lines = ["| variant | what changes | median ms/step | p90 ms | images/s | speed-up |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['description']} | {r['median_ms']:.0f} | {r['p90_ms']:.0f} | {r['images_per_s']:.1f} | "
              f"{r['speedup']:.2f}x |" for r in results["variants"]]
    return "\n".join(lines)


# --------------------------------------------------------------------------- results and plots


def save_results(results: dict, path: str | Path) -> Path:
    """Write ``results`` as JSON to ``path`` atomically (:func:`course_lib.atomic.write_json`)."""
    return write_json(path, results, indent=2)


def load_results(name: str = "bench_cpu.json") -> dict:
    """Committed results shipped with the package (``course_lib/assets/results/NAME``)."""
    path = resources.files("course_lib") / RESULTS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"no committed benchmark {name!r}: run `python -m course_lib bench --out course_lib/{RESULTS_DIR}/{name}`")
    return json.loads(path.read_text())


def results_table(results: dict) -> str:
    """A Markdown table of the variants (latency, FPS, speed-up, mask AP and its drop)."""
    evaluated = "mask_AP" in results["variants"][0]
    header = "| variant | what changes | median ms | p90 ms | FPS | speed-up |" + (" mask AP | drop (points) |" if evaluated else "")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in results["variants"]:
        line = f"| {row['name']} | {row['description']} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} | {row['fps']:.1f} | {row['speedup']:.2f}x |"
        if evaluated:
            line += f" {100 * row['mask_AP']:.1f} | {row['mask_AP_drop']:+.1f} |"
        lines.append(line)
    return "\n".join(lines)


def pareto_front(results: dict) -> list[str]:
    """Names of the variants no other variant beats on both latency and mask AP, fastest first."""
    rows = sorted(results["variants"], key=lambda r: r["median_ms"])
    front, best_ap = [], -1.0
    for row in rows:
        if row["mask_AP"] > best_ap:
            front.append(row["name"])
            best_ap = row["mask_AP"]
    return front


def pareto_plot(results: dict, ax=None):
    """Latency (x, log scale) against mask AP (y), one labelled point per variant, Pareto front joined."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(7, 4.5))[1]
    rows = {row["name"]: row for row in results["variants"]}
    for name, row in rows.items():
        ax.scatter(row["median_ms"], 100 * row["mask_AP"], color="tab:blue")
        ax.annotate(name, (row["median_ms"], 100 * row["mask_AP"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = [rows[name] for name in pareto_front(results)]
    ax.plot([r["median_ms"] for r in front], [100 * r["mask_AP"] for r in front], color="tab:orange", label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("median latency per image (ms, log scale)")
    ax.set_ylabel("mask AP (%)")
    ax.set_title(f"{results['model']} on {results['data']}\n{results['device']}", fontsize=9)
    ax.legend()
    return ax
