"""``python -m course_lib video``: annotate a street video (detect, track, draw) and write MP4 or GIF."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from course_lib import deploy, environment, zoo
from course_lib.cli import options
from course_lib.cli.settings import VideoSettings
from course_lib.data.toycity import ToyCityDataset
from course_lib.deploy import eager
from course_lib.errors import BadInput
from course_lib.tracking import pipeline
from course_lib.tracking.video_io import frames_per_second, read_frames, write_gif, write_mp4, write_toycity_clip
from course_lib.utils import atomic, timing
from course_lib.utils.outputs import check_output

def cli(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter() - _seconds_since_process_start()
    parser = options.ArgumentParser(prog="python -m course_lib video", description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", help="video file or folder of frames")
    parser.add_argument("output", help="output .mp4 or .gif (with --toycity: where to write the clip)")
    parser.add_argument("--track", action="store_true", help="track instances: stable ids and colours")
    options.add_model_arguments(parser)
    options.add_settings_arguments(parser, VideoSettings)
    parser.add_argument("--no-side-by-side", action="store_true", help="write the annotated frames only")
    parser.add_argument("--toycity", action="store_true", help="write a generated ToyCity clip to OUTPUT and stop")
    parser.add_argument("--bench", metavar="OUT.json", help="also write the time budget, the machine and its load as JSON")
    parser.add_argument("--force-loaded", action="store_true", help="write --bench even when the machine is busy (recorded)")
    args = parser.parse_args(argv)
    settings = options.settings_from_arguments(VideoSettings, args)
    if args.toycity:  # a generated clip never replaces a file: `video IN --toycity` names the user's IN as OUTPUT
        if args.input is not None:
            parser.error("--toycity takes one name, the clip to write: leave out INPUT")
        path, _ = write_toycity_clip(check_output(args.output, "OUTPUT", replace=False), seed=settings.seed, num_frames=settings.frames)
        print("wrote", path)
        return 0
    if args.input is None:
        parser.error("give an INPUT video or frame folder (or --toycity to generate one)")
    check_output(args.output, "OUTPUT", inputs=(args.input, args.model, settings.runtime))
    if args.bench:
        check_output(args.bench, "--bench", inputs=(args.input, args.output, args.model))
    variant = eager.get(settings.variant)
    frames = read_frames(args.input)
    first = next(frames)  # fails here, with read_frames' message, on a bad input
    fps = frames_per_second(args.input)
    model = zoo.from_command_line(args.model, args.arch, environment.device())
    description, cache = f"{args.model} model, variant {variant.name}", None
    if settings.runtime:
        predictor, description, cache = _exported(model, settings, variant, first.shape[:2])
        detect, batch_size, applied = predictor.detect_frames, 1, _torch_on_one_thread()
    else:
        variant = _one_threshold(model, variant, settings.min_score, exported=False)
        detect, batch_size, applied = pipeline.eager_detector(model), settings.batch_size or variant.batch_size, eager.apply(model, variant)
    environment.print_banner(description, str(args.input))
    output = Path(args.output)

    def write(drawn) -> Path:
        return write_gif(list(drawn), output, fps) if output.suffix.lower() == ".gif" else write_mp4(drawn, output, fps)

    load_before = timing.load_average_1min()
    stream = itertools.islice(itertools.chain([first], frames), settings.max_frames)  # later frames may not even decode
    with applied, tqdm(stream, desc="frames", unit="frame", total=settings.max_frames) as progress:  # closed before an error shows
        path, budget = pipeline.run(progress, detect, write, args.track, settings.min_score, batch_size,
                                    side=not args.no_side_by_side, serial=settings.pipeline == "serial")
    command_s = time.perf_counter() - started
    print("wrote", path)
    print(budget.table())
    print(f"whole command: {command_s:.1f} s ({command_s - budget.wall_s:.1f} s outside the pipeline: start-up, model, "
          f"{'cached export' if cache == 'hit' else 'export and calibration' if cache == 'miss' else 'no export'})")
    if args.bench:
        record = _bench_record(settings, description, first.shape[:2], budget, command_s, cache, load_before, args.force_loaded)
        print("wrote", atomic.write_json(args.bench, record))
    return 0


@contextlib.contextmanager
def _torch_on_one_thread() -> Iterator[None]:
    """torch on one thread inside (the exported model's runtime keeps the threads it was compiled with).

    The torch work around an exported model (resize, paste, tracking, drawing) is small, and torch's
    OpenMP threads, spinning while they wait for work, would take the cores from the runtime's own
    worker threads: on two cores that made every torch stage several times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _seconds_since_process_start() -> float:
    """How long ``python -m course_lib`` has been running (start-up and imports: part of the whole command),
    from Linux's /proc; 0 elsewhere, or when this command runs inside another program (a test, a notebook)."""
    if not sys.argv[0].endswith("__main__.py"):
        return 0.0
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, counted after the command name
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _one_threshold(model: torch.nn.Module, variant: eager.Variant, min_score: float, exported: bool) -> eager.Variant:
    """``variant``, its model-side score cut lowered to ``min_score`` where that is lower, so that
    ``--min-score`` is the one threshold; an exported graph keeps its cut, so there a lower one is refused."""
    inside = variant.score_thresh if variant.score_thresh is not None else model.roi_heads.score_thresh
    if min_score >= inside:
        return variant
    if exported:
        raise BadInput(f"--min-score {min_score:g} is below the score threshold {inside:g} exported with settings "
                       f"{variant.name}: give --min-score {inside:g} or more, or run without --runtime")
    return dataclasses.replace(variant, score_thresh=min_score)


def _exported(model: torch.nn.Module, settings: VideoSettings, variant: eager.Variant, size: tuple[int, int]):
    """(predictor, description, cache: 'hit', 'miss' or None) for ``--runtime``: an exported file, or
    the model exported for the size it sees frames of ``size`` at (:mod:`course_lib.deploy.cache`)."""
    if not deploy.available():
        raise BadInput("--runtime needs ONNX, ONNX Runtime, OpenVINO and NNCF: pip install 'course_lib[deploy]'")
    from course_lib.deploy import cache, export, variants  # needs course_lib[deploy]

    spec = settings.runtime
    if Path(spec).suffix in (".onnx", ".xml"):
        try:
            predictor = variants.load(spec)
        except FileNotFoundError as error:
            raise BadInput(str(error)) from None
        if predictor.metadata.get("settings") in eager.VARIANTS:
            _one_threshold(model, eager.get(predictor.metadata["settings"]), settings.min_score, exported=True)
        return predictor, f"{spec} ({predictor.description}, settings {predictor.metadata['settings']})", None
    name = spec if "@" in spec else f"{spec}@{variant.name}"
    try:
        deployed = variants.parse(name)
    except ValueError as error:
        raise BadInput(str(error)) from None
    if deployed is None:
        raise BadInput(f"--runtime {spec}: give an exported .onnx/.xml file or one of {', '.join(variants.RUNTIMES)}")
    _one_threshold(model, deployed.settings, settings.min_score, exported=True)
    model = model.cpu()
    with eager.apply(model, deployed.settings):
        model_size = export.resized_size(model, *size)  # the size it was trained at: frames are resized to it once

    def calibration(count: int) -> list[torch.Tensor]:
        scenes = ToyCityDataset(count, seed=0, height=model_size[0], width=model_size[1])
        return [scenes[i][0] for i in range(len(scenes))]

    predictor, hit = cache.cached_predictor(model, deployed, model_size, calibration, settings.calibration)
    where = "cached" if hit else "exported now, cached"
    return predictor, f"{name}: {deployed.describe()} at {model_size[0]}x{model_size[1]} ({where})", "hit" if hit else "miss"


def _bench_record(settings: VideoSettings, description: str, size: tuple[int, int], budget: pipeline.Budget,
                  command_s: float, cache: str | None, load_before: float, force: bool) -> dict:
    """What ``--bench`` writes: the budget with the machine, its load before and after, and the command."""
    return {
        "what": "python -m course_lib video: time per stage of the video pipeline (course_lib.tracking.pipeline)",
        **timing.machine_record(torch.device("cpu"), load_before, force),
        "model": description,
        "frame_size": list(size),
        "settings": dataclasses.asdict(settings),
        "export_cache": cache,
        "budget": budget.as_dict(),
        "command_s": command_s,
    }
