"""The benchmark: eager and deployed variants timed interleaved, with time per stage, peak memory and mask AP.

Every round takes the next image and runs *every* variant on it, in an order that rotates from
round to round, so a burst of background load or a slow stretch of the clock hits all of them
alike. A variant's ``speedup`` is the median over rounds of the baseline's time divided by the
variant's time in the same round (:func:`course_lib.utils.timing.paired_speedup`); the clocks,
the summary of each row and the machine record are :mod:`course_lib.utils.timing`'s.

``python -m course_lib bench --help`` runs it from the shell (:mod:`course_lib.cli.bench`); notebooks
call :func:`run_benchmark` and read committed results with :func:`course_lib.results.load_results`.
Training steps are timed by :mod:`course_lib.engine.step_benchmark`.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from course_lib.data.toycity import clip, held_out
from course_lib.deploy import eager
from course_lib.deploy import variants as deploy_variants
from course_lib.environment import model_device
from course_lib.evaluation.coco_eval import coco_metrics
from course_lib.evaluation.inference import inference_on_dataset
from course_lib.modeling.maskrcnn import build
from course_lib.modeling.stage_timing import measure_stages
from course_lib.tracking.track import Tracker, tracks_to_frame
from course_lib.tracking.track_metrics import noisy_detections
from course_lib.utils import timing

#: How ``speedup`` is computed, written into every results file.
TIMING = ("interleaved: each round runs every variant on the same image (a batched variant on that image and the "
          "next ones, its time divided by the batch), order rotating; speedup = median over rounds of baseline time / "
          "variant time")


@torch.inference_mode()
def mask_ap(model: nn.Module, dataset: Sequence[tuple[Tensor, dict]], batch_size: int = 1) -> dict[str, float]:
    """COCO mask and box AP of ``model`` (where it is) on ``(image, target)`` pairs: ``{"mask_AP", "mask_AP50", "box_AP"}``."""
    predictions, targets = inference_on_dataset(model, dataset, model_device(model), batch_size, progress=False)
    metrics = coco_metrics(predictions, targets)
    return {"mask_AP": metrics["segm"]["AP"], "mask_AP50": metrics["segm"]["AP50"], "box_AP": metrics["bbox"]["AP"]}


def add_ap_drops(rows: list[dict]) -> None:
    """Give each row ``mask_AP_drop``: how many AP points its mask AP lies below the first row's."""
    for row in rows:
        row["mask_AP_drop"] = 100 * (rows[0]["mask_AP"] - row["mask_AP"])


def toycity_val(length: int, height: int = 128, width: int = 256) -> list[tuple[Tensor, dict]]:
    """:func:`course_lib.data.toycity.held_out` as a list of ``(image, target)``, rendered once for repeated timing."""
    dataset = held_out(length, height, width)
    return [dataset[i] for i in range(length)]


def resized_size(model: nn.Module, image: Tensor) -> tuple[int, int]:
    """(h, w) the model's transform resizes ``image`` to (before padding)."""
    with torch.inference_mode():
        return tuple(model.transform([image.to(model_device(model))])[0].image_sizes[0])


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


class _Predictor:
    """One variant, ready to time: ``run(images)``, its description, images per call, and the eager model if any."""

    def __init__(self, run: Callable, description: str, batch_size: int = 1, eager_model: nn.Module | None = None):
        self.run, self.description, self.batch_size, self.eager_model = run, description, batch_size, eager_model


def _build(model: nn.Module, name: str, images: Sequence[Tensor], calibration: Sequence[Tensor],
           undo: contextlib.ExitStack, progress: Callable[[str], None] | None) -> _Predictor | str:
    """Variant ``name`` of ``model`` (a copy: the caller's model is left as it is), or the reason it cannot run here."""
    device = model_device(model)
    deployed = deploy_variants.parse(name)
    if deployed is not None:
        if device.type != "cpu":
            return "runtimes (ONNX Runtime, OpenVINO) run on the CPU: benchmark a CPU model"
        if progress:
            progress(f"{name}: exporting, {deployed.describe()}")
        height, width = images[0].shape[-2:]
        predictor, _ = deploy_variants.build(model, deployed, height, width, calibration,
                                             undo.enter_context(tempfile.TemporaryDirectory()))
        return _Predictor(predictor, deployed.describe())
    variant = eager.get(name)
    reason = variant.supported(device)
    if reason:
        return reason
    copied = model if name == "baseline" else copy.deepcopy(model)
    undo.enter_context(eager.apply(copied, variant))
    return _Predictor(copied, f"PyTorch eager: {variant.describe()}", variant.batch_size, copied)


def _call(predictor: _Predictor, images: Sequence[Tensor]) -> Callable[[int], int]:
    """Round ``i``: the predictor on image ``i`` (and the next ones for a batch); returns the detections of the first."""
    def run(index: int) -> int:
        batch = [images[(index + k) % len(images)] for k in range(predictor.batch_size)]
        return len(predictor.run(batch)[0]["boxes"])

    return run


def _row(name: str, predictor: _Predictor, rounds: timing.Rounds, build_s: float, stage_repeats: int,
         images: Sequence[Tensor]) -> dict:
    """A results row: the timing summary per image, the paired speed-up, the build and warm-up time, and for an
    eager model its input size, time per stage and peak memory."""
    seconds = [s / predictor.batch_size for s in rounds.seconds[name]]
    baseline, measured = timing.summary(rounds.seconds["baseline"]), timing.summary(seconds)
    row = {"name": name, "description": predictor.description, "batch_size": predictor.batch_size, **measured.row(),
           "paired_baseline_ms": 1e3 * baseline.median,
           "speedup": timing.paired_speedup(rounds.seconds["baseline"], seconds),
           "speedup_of_medians": baseline.median / measured.median,
           "build_s": build_s, "warmup_s": rounds.warmup_s[name],
           "detections_per_image": float(np.mean(rounds.outputs[name]))}
    if predictor.eager_model is not None and stage_repeats > 0:
        stages, memory = measure_stages(predictor.eager_model, images, stage_repeats)
        row.update(model_input_size=list(resized_size(predictor.eager_model, images[0])), peak_memory_mb=memory,
                   stages_ms={stage: 1e3 * seconds for stage, seconds in stages.items()})
    return row


def run_benchmark(model: nn.Module, dataset: Sequence[tuple[Tensor, dict]], names: Sequence[str], *,
                  calibration: Sequence[Tensor] = (), model_name: str = "model", data_name: str = "ToyCity val",
                  warmup: int = 2, repeats: int = 10, stage_repeats: int = 3, evaluate: bool = True,
                  progress: Callable[[str], None] | None = print) -> dict:
    """Time eager variants (:mod:`course_lib.deploy.eager` names) and runtime variants (:mod:`course_lib.deploy.variants`
    names) interleaved on ``model``'s device, then time each eager one's stages and compute every mask AP on all of
    ``dataset`` (skip with ``evaluate=False``); a JSON-ready dict (:func:`course_lib.results.save_results`).

    The unmodified model (``baseline``) always runs first and is every ratio's reference; ``mask_AP_drop``
    (AP points) is relative to it. Variants the device cannot run are listed under ``skipped`` with the reason.
    INT8 runtimes calibrate on ``calibration`` (images from outside ``dataset``). The machine record is
    :func:`course_lib.utils.timing.machine_record`'s (without the load: writers add it).
    """
    model = model.eval()
    images = [image.to(model_device(model)) for image, _ in dataset]
    names = ["baseline"] + [n for n in names if n != "baseline"]
    predictors, build_s, skipped, rows = {}, {}, {}, []
    with contextlib.ExitStack() as undo:
        for name in names:
            start = time.perf_counter()
            built = _build(model, name, images, calibration, undo, progress)
            if isinstance(built, str):
                skipped[name] = built
                continue
            predictors[name], build_s[name] = built, time.perf_counter() - start
        if progress:
            progress(f"timing {len(predictors)} variants interleaved: {warmup} + {repeats} rounds")
        with torch.inference_mode():
            rounds = timing.interleaved({name: _call(p, images) for name, p in predictors.items()},
                                        model_device(model), warmup, repeats)
        for name, predictor in predictors.items():
            rows.append(_row(name, predictor, rounds, build_s[name], stage_repeats, images))
            if evaluate:
                if progress:
                    progress(f"{name}: mask AP on {len(dataset)} images")
                rows[-1].update(mask_ap(predictor.run, dataset, predictor.batch_size))
    if evaluate:
        add_ap_drops(rows)
    return {"model": model_name, "data": data_name, "images": len(dataset), "input_size": list(images[0].shape[-2:]),
            **timing.machine_record(model_device(model)), "timing": TIMING, "calibration_images": len(calibration),
            "warmup": warmup, "repeats": repeats, "variants": rows, "skipped": skipped}


def tracker_overhead(num_objects: int = 40, num_frames: int = 60, height: int = 512, width: int = 1024,
                     seed: int = 0) -> dict:
    """Milliseconds per frame of :class:`course_lib.tracking.track.Tracker` alone, on a crowded ToyCity clip.

    Detections are the clip's ground truth with noise (:func:`~course_lib.tracking.track_metrics.noisy_detections`), so no
    model runs. ``update_ms`` is matching, state updates and smoothing; ``paste_ms`` the extra cost
    of turning the reported tracks into full-resolution masks (``tracks_to_frame``).
    """
    targets = [target for _, target in clip(seed, num_frames, height, width, num_objects=num_objects, fps=25)]
    detections = noisy_detections(targets, seed=seed)
    tracker, cpu = Tracker(), torch.device("cpu")
    update, paste = [], []
    for frame in detections:
        with timing.Stopwatch(cpu) as updating:
            tracks = tracker.update(frame)
        with timing.Stopwatch(cpu) as pasting:
            tracks_to_frame(tracks, height, width)
        update.append(updating.seconds)
        paste.append(pasting.seconds)
    updates = timing.summary(update[2:]).row()  # the first frames only create tracks
    return {
        "instances_per_frame": float(np.mean([len(d["boxes"]) for d in detections])),
        "frame_size": [height, width],
        "update_ms": updates["median_ms"],
        "update_p90_ms": updates["p90_ms"],
        "paste_ms": timing.summary(paste[2:]).row()["median_ms"],
        **timing.machine_record(cpu),
    }
