"""``python -m course_lib bench``: the command line of :mod:`course_lib.deploy.benchmark` and of the deploy benchmark (:mod:`course_lib.deploy.interleaved`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import torch

from course_lib import runtime, zoo
from course_lib.cli import options
from course_lib.data.toycity import ToyCityDataset
from course_lib.deploy import available as deploy_available
from course_lib.deploy import benchmark, eager
from course_lib.deploy.interleaved import is_deploy_name, random_weights_model, run_deploy_benchmark
from course_lib.deploy.timing import checked_load, load_average_1min
from course_lib.engine import step_benchmark
from course_lib.engine.settings import NON_NEGATIVE, POSITIVE
from course_lib.results import results_table, save_results
from course_lib.utils.outputs import check_output


def cli(argv: Sequence[str] | None = None) -> int:
    parser = options.ArgumentParser(prog="python -m course_lib bench", description=benchmark.__doc__.splitlines()[0])
    options.add_model_arguments(parser)
    parser.add_argument("--variants", default="baseline,rpn_300,rpn_100,det_20,channels_last,int8,bf16,scale_0.75,scale_0.5,batch_4,fast,fast_small,fast_bf16",
                        help=f"comma-separated, from: {', '.join(eager.VARIANTS)}; or runtimes (course_lib[deploy]): "
                             "ort, ov_fp32, ov_bf16, ov_int8, ov_int8_bf16, each optionally @SETTINGS (e.g. ov_int8@fast); all are then timed interleaved")
    parser.add_argument("--calibration", type=options.number(int, POSITIVE), default=runtime.pick(2, 64),
                        help="ToyCity training scenes that calibrate INT8 runtimes")
    parser.add_argument("--val", type=options.number(int, POSITIVE), default=runtime.pick(4, 100), help="held-out ToyCity scenes for mask AP")
    parser.add_argument("--size", type=options.image_size, default=(128, 256), help="HxW of the ToyCity scenes (the model was trained at 128x256)")
    parser.add_argument("--warmup", type=options.number(int, NON_NEGATIVE), default=3, help="untimed runs first")
    parser.add_argument("--repeats", type=options.number(int, POSITIVE), default=runtime.pick(3, 30), help="timed runs")
    parser.add_argument("--threads", type=options.number(int, POSITIVE), default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-eval", action="store_true", help="time only, skip mask AP")
    parser.add_argument("--out", default=None, help="write the results JSON here")
    parser.add_argument("--tracker", action="store_true", help="time the tracker alone (30 instances per frame) instead")
    parser.add_argument("--train-step", action="store_true",
                        help="time training steps (RoI pooler x precision x processes) on ToyCity training scenes instead")
    parser.add_argument("--batch-size", type=options.number(int, POSITIVE), default=4, help="images per training step (with --train-step)")
    parser.add_argument("--force-loaded", action="store_true",
                        help="write --out even when the load average exceeds the core count (recorded in the file)")
    args = parser.parse_args(argv)
    if args.out:  # before minutes of timing, not after
        check_output(args.out, "--out", inputs=(args.model,))
    args.load_before = load_average_1min()
    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = args.size
    if args.train_step:
        device = runtime.device()
        runtime.print_banner(f"{args.model} model (training steps)", f"ToyCity training scenes at {height}x{width}")
        result = step_benchmark.training_step_benchmark(zoo.from_command_line(args.model, args.arch, device),
                                         ToyCityDataset(64, seed=0, height=height, width=width),
                                         batch_size=args.batch_size, warmup=args.warmup, repeats=args.repeats)
        result["model"], result["data"] = f"{args.model} model", f"ToyCity training scenes, {height}x{width}"
        print(step_benchmark.training_step_table(result))
        if args.out:
            _save(result, args)
        return 0
    if args.tracker:
        result = benchmark.tracker_overhead()
        print(json.dumps(result, indent=2))
        if args.out:
            _save(result, args)
        return 0
    names = args.variants.split(",")

    try:
        deployed = [n for n in names if is_deploy_name(n)]
    except ValueError as error:  # a runtime with settings an export cannot keep
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.model.startswith("random:") or deployed:
        if not deploy_available():
            print("error: runtime variants need ONNX, ONNX Runtime, OpenVINO and NNCF: pip install 'course_lib[deploy]'", file=sys.stderr)
            return 2
        return _deploy_cli(args, names, height, width)
    device = runtime.device()
    model, name = zoo.from_command_line(args.model, args.arch, device), f"{args.model} model"
    dataset = benchmark.toycity_val(args.val, height, width)
    runtime.print_banner(name, f"ToyCity val, {args.val} scenes at {height}x{width}")
    table = benchmark.run_benchmark(model, dataset, args.variants.split(","), model_name=name,
                            data_name=f"ToyCity val ({args.val} scenes, {height}x{width})", warmup=args.warmup,
                            repeats=args.repeats, evaluate=not args.no_eval)
    return _report(table, args)


def _deploy_cli(args: argparse.Namespace, names: list[str], height: int, width: int) -> int:
    """``bench`` with runtime variants, or with ``--model random:ARCH`` (timing only): interleaved, on the CPU."""
    if args.model.startswith("random:"):
        model = random_weights_model(args.model.split(":", 1)[1], height, width)
        name = f"{args.model.split(':', 1)[1]} with random weights (timing only), {model.roi_heads.detections_per_img} detections per image"
        args.no_eval = True
    else:
        model, name = zoo.from_command_line(args.model, args.arch, torch.device("cpu")), f"{args.model} model"
    dataset = benchmark.toycity_val(args.val, height, width)
    calibration = ToyCityDataset(args.calibration, seed=0, height=height, width=width)  # training scenes
    runtime.print_banner(name, f"ToyCity val, {args.val} scenes at {height}x{width}")
    table = run_deploy_benchmark(model, dataset, names, calibration=[calibration[i][0] for i in range(len(calibration))],
                                   model_name=name, data_name=f"ToyCity val ({args.val} scenes, {height}x{width})",
                                   warmup=args.warmup, repeats=args.repeats, evaluate=not args.no_eval)
    return _report(table, args)


def _report(table: dict, args: argparse.Namespace) -> int:
    """Print a benchmark's table and what it skipped; write it to ``--out`` if given."""
    print(results_table(table))
    for variant, reason in table["skipped"].items():
        print(f"skipped {variant}: {reason}")
    if args.out:
        _save(table, args)
    return 0


def _save(result: dict, args: argparse.Namespace) -> None:
    """Write ``result`` to ``--out`` with its command and the load before and after; refused on a busy machine
    (:func:`checked_load`)."""
    command = "python -m course_lib " + " ".join(sys.argv[1:])
    print("wrote", save_results({"command": command, **result, **checked_load(args.load_before, args.force_loaded)}, args.out))
