"""R50-FPN v2 Mask R-CNN inference on a GPU: FP32, TF32, FP16, channels_last and torch.compile, timed interleaved.

    python data_scripts/bench_gpu.py --out course_lib/assets/results/deploy_gpu.json
    python data_scripts/bench_gpu.py --device cpu --size 256 --repeats 2 --out /tmp/smoke.json   # a quick check anywhere

Timing only: the model has random weights (seed 0), so nothing is known of its accuracy here; random
class scores pass any score threshold and would fill torchvision's cap of 100 detections, so the cap is
set to a realistic ``--detections`` (20: about what a Cityscapes street holds). Images are
``--size`` x ``2 * --size`` (Cityscapes' 1:2 frame; 1024 x 2048 is its full resolution), and the
model's transform keeps them at that size. Needs torch, torchvision and course_lib's timing toolkit (no
internet, no TensorRT). Every variant is a separate copy of the model; each round runs every variant
once on the same image batch, in an order that rotates, with the device synchronised around each call
(:func:`course_lib.utils.timing.interleaved`), so ``speedup`` (the median over rounds of FP32's time / the variant's) pairs calls made moments apart.
``torch.compile`` compiles the backbone only (the RPN and heads have data-dependent shapes); its
compile time is reported as ``warmup_s``. A variant that fails is listed under ``skipped`` with its error.
"""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Callable

import torch
import torchvision
from torch import nn

from course_lib.errors import BadInput, MachineBusy
from course_lib.results import results_table, save_results
from course_lib.utils import timing

#: name -> (what it does, needs CUDA)
VARIANTS = {
    "fp32": ("float32, TF32 off (the reference)", False),
    "tf32": ("float32 with TF32 tensor-core matmuls and convolutions", True),
    "channels_last": ("float32, channels_last memory format", False),
    "fp16_autocast": ("float16 autocast", True),
    "fp16_half": ("model.half(): float16 weights and activations", True),
    "channels_last_fp16": ("float16 autocast, channels_last", True),
    "compile_fp16": ("float16 autocast, channels_last, torch.compile(backbone)", True),
}


def build_model(size: int, detections: int, device: torch.device) -> nn.Module:
    """torchvision's ``maskrcnn_resnet50_fpn_v2`` with random weights (seed 0), 9 classes, for ``size x 2 size`` images."""
    torch.manual_seed(0)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn_v2(
        weights=None, weights_backbone=None, num_classes=9, min_size=size, max_size=2 * size,
        box_detections_per_img=detections)
    return model.eval().to(device)


def make_variant(name: str, model: nn.Module, device: torch.device) -> Callable[[list[torch.Tensor]], list[dict]]:
    """A callable ``images -> detections`` running a copy of ``model`` as variant ``name``."""
    copy_ = copy.deepcopy(model)
    autocast = name in ("fp16_autocast", "channels_last_fp16", "compile_fp16")
    if name in ("channels_last", "channels_last_fp16", "compile_fp16"):
        copy_ = copy_.to(memory_format=torch.channels_last)
    if name == "fp16_half":
        copy_ = copy_.half()
    if name == "compile_fp16":
        copy_.backbone = torch.compile(copy_.backbone, dynamic=False)
    tf32 = name == "tf32"

    def run(images: list[torch.Tensor]) -> list[dict]:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        if name == "fp16_half":
            images = [image.half() for image in images]
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=autocast):
            return copy_(images)

    return run


def benchmark(device: torch.device, size: int = 1024, detections: int = 20, batch: int = 1, warmup: int = 5,
              repeats: int = 30, names: list[str] | None = None) -> dict:
    """Time every variant of ``names`` (default: all that ``device`` runs) interleaved; a JSON-ready dict."""
    torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels once
    model = build_model(size, detections, device)
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, 2 * size, generator=generator).to(device) for _ in range(batch)]
    runs, first_call_s, skipped = {}, {}, {}
    for name in names or list(VARIANTS):
        if VARIANTS[name][1] and device.type != "cuda":
            skipped[name] = "needs a CUDA GPU"
            continue
        try:
            run = make_variant(name, model, device)
            with timing.Stopwatch(device) as first_call:  # a variant this torch/GPU cannot run fails here
                run(images)
            runs[name], first_call_s[name] = run, first_call.seconds
        except Exception as error:  # say why, time the others
            skipped[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    if not runs:
        raise BadInput(f"no variant runs on {device}: " + "; ".join(f"{name}: {why}" for name, why in skipped.items()))
    calls = {name: (lambda index, run=run: len(run(images))) for name, run in runs.items()}
    rounds = timing.interleaved(calls, device, max(warmup - 1, 0), repeats)  # the first call was a warm-up call
    order = list(runs)
    seconds = {name: [s / batch for s in rounds.seconds[name]] for name in order}
    rows = [{"name": name, "description": VARIANTS[name][0], **timing.summary(t).row(),
             "speedup": timing.paired_speedup(seconds[order[0]], t),
             "warmup_s": first_call_s[name] + rounds.warmup_s[name]}  # torch.compile's compile time included
            for name, t in seconds.items()]
    return {
        "what": f"maskrcnn_resnet50_fpn_v2 with random weights (timing only, accuracy unknown), {detections} detections "
                f"per image, {size}x{2 * size} inputs, batch {batch}",
        **timing.machine_record(device),
        "timing": f"interleaved rounds, device synchronised around each call; speedup = median over rounds of {order[0]} / variant",
        "reference": order[0],
        "warmup": warmup, "repeats": repeats, "variants": rows, "skipped": skipped,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--size", type=int, default=1024, help="image height; the width is twice it")
    parser.add_argument("--detections", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--out", required=True, help="where to write the results JSON")
    parser.add_argument("--force-loaded", action="store_true",
                        help="write --out even when the CPU's load average exceeds its core count (recorded in the file)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: torch sees no CUDA GPU; run with --device cpu for a quick check", file=sys.stderr)
        return 2
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        print(f"error: unknown variants {unknown}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    load_before = timing.load_average_1min()
    try:
        results = benchmark(device, args.size, args.detections, args.batch, args.warmup, args.repeats, names)
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(results["what"], "|", results["device"])
    print(results_table(results))
    for name, reason in results["skipped"].items():
        print(f"skipped {name}: {reason}")
    try:
        recorded = {**results, **timing.machine_record(device, load_before, args.force_loaded)}
    except MachineBusy as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("wrote", save_results(recorded, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
