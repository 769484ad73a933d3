"""``python -m course_lib bench``: the command line of :mod:`course_lib.deploy.benchmark` and of the deploy benchmark (:mod:`course_lib.deploy.interleaved`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Sequence

import torch

from course_lib import environment, zoo
from course_lib.cli import options
from course_lib.data.toycity import ToyCityDataset
from course_lib.deploy import available as deploy_available
from course_lib.deploy import benchmark, eager
from course_lib.deploy.interleaved import is_deploy_name, random_weights_model, run_deploy_benchmark
from course_lib.utils.timing import checked_load, load_average_1min
from course_lib.engine import step_benchmark
from course_lib.cli.settings import BenchSettings
from course_lib.results import results_table, save_results
from course_lib.utils.outputs import check_output


def cli(argv: Sequence[str] | None = None) -> int:
    parser = options.ArgumentParser(prog="python -m course_lib bench", description=benchmark.__doc__.splitlines()[0])
    options.add_model_arguments(parser)
    options.add_settings_arguments(parser, BenchSettings)
    parser.add_argument("--no-eval", action="store_true", help="time only, skip mask AP")
    parser.add_argument("--out", default=None, help="write the results JSON here")
    parser.add_argument("--tracker", action="store_true", help="time the tracker alone (30 instances per frame) instead")
    parser.add_argument("--train-step", action="store_true",
                        help="time training steps (RoI pooler x precision x processes) on ToyCity training scenes instead")
    parser.add_argument("--force-loaded", action="store_true",
                        help="write --out even when the load average exceeds the core count (recorded in the file)")
    args = parser.parse_args(argv)
    settings = options.settings_from_arguments(BenchSettings, args)
    if args.out:  # before minutes of timing, not after
        check_output(args.out, "--out", inputs=(args.model,))
    args.load_before = load_average_1min()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    height, width = settings.size
    if args.train_step:
        device = environment.device()
        environment.print_banner(f"{args.model} model (training steps)", f"ToyCity training scenes at {height}x{width}")
        result = step_benchmark.training_step_benchmark(zoo.from_command_line(args.model, args.arch, device),
                                         ToyCityDataset(64, seed=0, height=height, width=width),
                                         batch_size=settings.batch_size, warmup=settings.warmup, repeats=settings.repeats)
        result["model"], result["data"] = f"{args.model} model", f"ToyCity training scenes, {height}x{width}"
        print(step_benchmark.training_step_table(result))
        if args.out:
            _save(result, args, settings)
        return 0
    if args.tracker:
        result = benchmark.tracker_overhead()
        print(json.dumps(result, indent=2))
        if args.out:
            _save(result, args, settings)
        return 0
    names = settings.variants.split(",")

    try:
        deployed = [n for n in names if is_deploy_name(n)]
    except ValueError as error:  # a runtime with settings an export cannot keep
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.model.startswith("random:") or deployed:
        if not deploy_available():
            print("error: runtime variants need ONNX, ONNX Runtime, OpenVINO and NNCF: pip install 'course_lib[deploy]'", file=sys.stderr)
            return 2
        return _deploy_cli(args, settings, names)
    device = environment.device()
    model, name = zoo.from_command_line(args.model, args.arch, device), f"{args.model} model"
    dataset = benchmark.toycity_val(settings.val, height, width)
    environment.print_banner(name, f"ToyCity val, {settings.val} scenes at {height}x{width}")
    table = benchmark.run_benchmark(model, dataset, settings.variants.split(","), model_name=name,
                            data_name=f"ToyCity val ({settings.val} scenes, {height}x{width})", warmup=settings.warmup,
                            repeats=settings.repeats, evaluate=not args.no_eval)
    return _report(table, args, settings)


def _deploy_cli(args: argparse.Namespace, settings: BenchSettings, names: list[str]) -> int:
    """``bench`` with runtime variants, or with ``--model random:ARCH`` (timing only): interleaved, on the CPU."""
    height, width = settings.size
    if args.model.startswith("random:"):
        model = random_weights_model(args.model.split(":", 1)[1], height, width)
        name = f"{args.model.split(':', 1)[1]} with random weights (timing only), {model.roi_heads.detections_per_img} detections per image"
        args.no_eval = True
    else:
        model, name = zoo.from_command_line(args.model, args.arch, torch.device("cpu")), f"{args.model} model"
    dataset = benchmark.toycity_val(settings.val, height, width)
    calibration = ToyCityDataset(settings.calibration, seed=0, height=height, width=width)  # training scenes
    environment.print_banner(name, f"ToyCity val, {settings.val} scenes at {height}x{width}")
    table = run_deploy_benchmark(model, dataset, names, calibration=[calibration[i][0] for i in range(len(calibration))],
                                   model_name=name, data_name=f"ToyCity val ({settings.val} scenes, {height}x{width})",
                                   warmup=settings.warmup, repeats=settings.repeats, evaluate=not args.no_eval)
    return _report(table, args, settings)


def _report(table: dict, args: argparse.Namespace, settings: BenchSettings) -> int:
    """Print a benchmark's table and what it skipped; write it to ``--out`` if given."""
    print(results_table(table))
    for variant, reason in table["skipped"].items():
        print(f"skipped {variant}: {reason}")
    if args.out:
        _save(table, args, settings)
    return 0


def _save(result: dict, args: argparse.Namespace, settings: BenchSettings) -> None:
    """Write ``result`` to ``--out`` with its command, its settings and the load before and after; refused on a
    busy machine (:func:`checked_load`)."""
    command = "python -m course_lib " + " ".join(sys.argv[1:])
    recorded = {"command": command, **result, "settings": dataclasses.asdict(settings),
                **checked_load(args.load_before, args.force_loaded)}
    print("wrote", save_results(recorded, args.out))
