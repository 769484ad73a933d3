"""``python -m course_lib bench``: the command line of :mod:`course_lib.deploy.benchmark` (eager and runtime variants,
timed interleaved), of the training-step benchmark and of the tracker's timing."""

from __future__ import annotations

import dataclasses
import json
from typing import Sequence

import torch

from course_lib import environment, zoo
from course_lib.cli import options
from course_lib.cli.settings import BenchSettings
from course_lib.data.toycity import ToyCityDataset
from course_lib.deploy import available as deploy_available
from course_lib.deploy import benchmark, eager
from course_lib.engine import step_benchmark
from course_lib.errors import BadInput
from course_lib.results import results_table, save_results
from course_lib.utils import timing
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
    load_before = timing.load_average_1min()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if args.train_step:
        result, device = _training_steps(args.model, args.arch, settings)
    elif args.tracker:
        result, device = benchmark.tracker_overhead(), torch.device("cpu")
        print(json.dumps(result, indent=2))
    else:
        result, device = _variants(args.model, args.arch, settings, evaluate=not args.no_eval)
    if args.out:
        recorded = {**result, **timing.machine_record(device, load_before, args.force_loaded),
                    "settings": dataclasses.asdict(settings)}
        print("wrote", save_results(recorded, args.out))
    return 0


def _runtime_names(names: Sequence[str]) -> list[str]:
    """The runtime variants among ``names``; :class:`~course_lib.errors.BadInput` for a name that is no variant, or
    for runtimes without their packages."""
    try:
        runtimes = [name for name in names if benchmark.is_deploy_name(name)]
        for name in set(names) - set(runtimes):
            eager.get(name)
    except ValueError as error:  # an unknown name, or a runtime with settings an export cannot keep
        raise BadInput(f"--variants: {error}") from None
    if runtimes and not deploy_available():
        raise BadInput(f"--variants {','.join(runtimes)}: runtime variants need ONNX, ONNX Runtime, OpenVINO and NNCF: "
                       "pip install 'course_lib[deploy]', or time eager variants only")
    return runtimes


def _variants(model_arg: str, arch: str, settings: BenchSettings, evaluate: bool) -> tuple[dict, torch.device]:
    """The benchmark of ``--variants`` on the ToyCity model (or ``--model random:ARCH``, timing only): (table, device).
    Runtime variants run on the CPU, so a benchmark with any of them runs every variant there."""
    names = settings.variants.split(",")
    runtimes = _runtime_names(names)
    device = torch.device("cpu") if runtimes else environment.device()
    height, width = settings.size
    if model_arg.startswith("random:"):
        model = benchmark.random_weights_model(model_arg.split(":", 1)[1], height, width).to(device)
        name = (f"{model_arg.split(':', 1)[1]} with random weights (timing only), "
                f"{model.roi_heads.detections_per_img} detections per image")
        evaluate = False
    else:
        model, name = zoo.from_command_line(model_arg, arch, device), f"{model_arg} model"
    dataset = benchmark.toycity_val(settings.val, height, width)
    scenes = ToyCityDataset(settings.calibration, seed=0, height=height, width=width)  # training scenes, for INT8
    calibration = [scenes[i][0] for i in range(len(scenes))] if runtimes else []
    environment.print_banner(name, f"ToyCity val, {settings.val} scenes at {height}x{width}")
    table = benchmark.run_benchmark(model, dataset, names, calibration=calibration,
                                    model_name=name, data_name=f"ToyCity val ({settings.val} scenes, {height}x{width})",
                                    warmup=settings.warmup, repeats=settings.repeats, evaluate=evaluate)
    print(results_table(table))
    for variant, reason in table["skipped"].items():
        print(f"skipped {variant}: {reason}")
    return table, device


def _training_steps(model_arg: str, arch: str, settings: BenchSettings) -> tuple[dict, torch.device]:
    """``bench --train-step``: seconds per training step of each pooler and precision on ToyCity scenes."""
    device = environment.device()
    height, width = settings.size
    environment.print_banner(f"{model_arg} model (training steps)", f"ToyCity training scenes at {height}x{width}")
    result = step_benchmark.training_step_benchmark(zoo.from_command_line(model_arg, arch, device),
                                                    ToyCityDataset(64, seed=0, height=height, width=width),
                                                    batch_size=settings.batch_size, warmup=settings.warmup,
                                                    repeats=settings.repeats)
    result["model"], result["data"] = f"{model_arg} model", f"ToyCity training scenes, {height}x{width}"
    print(step_benchmark.training_step_table(result))
    return result, device
