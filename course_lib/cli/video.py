"""``python -m course_lib video``: annotate a street video (detect, track, draw) and write MP4 or GIF."""

from __future__ import annotations

import contextlib
import itertools
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from course_lib import deploy, environment, zoo
from course_lib.cli import options
from course_lib.data.toycity import ToyCityDataset
from course_lib.deploy import eager, variants
from course_lib.cli.settings import VideoSettings
from course_lib.tracking.annotate import annotate, side_by_side
from course_lib.tracking.track import Tracker
from course_lib.tracking.video_io import frames_per_second, read_frames, write_gif, write_mp4, write_toycity_clip
from course_lib.utils.outputs import check_output


def cli(argv: Sequence[str] | None = None) -> int:
    parser = options.ArgumentParser(prog="python -m course_lib video", description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", help="video file or folder of frames")
    parser.add_argument("output", help="output .mp4 or .gif (with --toycity: where to write the clip)")
    parser.add_argument("--track", action="store_true", help="track instances: stable ids and colours")
    options.add_model_arguments(parser)
    options.add_settings_arguments(parser, VideoSettings)
    parser.add_argument("--no-side-by-side", action="store_true", help="write the annotated frames only")
    parser.add_argument("--toycity", action="store_true", help="write a generated ToyCity clip to OUTPUT and stop")
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
    variant = eager.get(settings.variant)
    frames = read_frames(args.input)
    first = next(frames)  # fails here, with read_frames' message, on a bad input
    fps = frames_per_second(args.input)
    model = zoo.from_command_line(args.model, args.arch, environment.device())
    description = f"{args.model} model, variant {variant.name}"
    if settings.runtime:
        try:
            model, description = _exported(model, settings.runtime, variant, first.shape[:2], settings.calibration)
        except (FileNotFoundError, ValueError, ImportError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        variant = eager.get("baseline")  # the settings are in the exported graph
    environment.print_banner(description, str(args.input))

    def all_frames() -> Iterator[np.ndarray]:
        yield first
        yield from frames

    stream = itertools.islice(all_frames(), settings.max_frames)  # stops reading there: later frames may not even decode
    with (eager.apply(model, variant) if not settings.runtime else contextlib.nullcontext()):
        results = annotate(model, stream, Tracker() if args.track else None, settings.batch_size or variant.batch_size, settings.min_score)
        with tqdm(results, desc="frames", unit="frame") as progress:  # closed, its line ended, before a writer's error shows
            drawn = (d if args.no_side_by_side else side_by_side(f, d) for f, _, d in progress)
            if str(args.output).lower().endswith(".gif"):
                path = write_gif(list(drawn), args.output, fps)
            else:
                path = write_mp4(drawn, args.output, fps)
    print("wrote", path)
    return 0


def _exported(model: torch.nn.Module, spec: str, variant: eager.Variant, size: tuple[int, int], calibration: int):
    """(predictor, description) for ``--runtime``: an exported file, or a runtime exported now for ``size``."""
    if not deploy.available():
        raise ImportError("--runtime needs ONNX, ONNX Runtime, OpenVINO and NNCF: pip install 'course_lib[deploy]'")
    if Path(spec).suffix in (".onnx", ".xml"):
        predictor = variants.load(spec)
        return predictor, f"{spec} ({predictor.description}, settings {predictor.metadata['settings']})"
    name = spec if "@" in spec else f"{spec}@{variant.name}"
    deployed = variants.parse(name)
    if deployed is None:
        raise ValueError(f"--runtime {spec}: give an exported .onnx/.xml file or one of {', '.join(variants.RUNTIMES)}")
    scenes = ToyCityDataset(calibration if deployed.runtime.startswith("ov_int8") else 0, seed=0, height=size[0], width=size[1])
    with tempfile.TemporaryDirectory() as folder:  # the runtime holds the model in memory once loaded
        predictor, _ = variants.build(model.cpu(), deployed, *size, [scenes[i][0] for i in range(len(scenes))], folder)
    return predictor, f"{name}: {deployed.describe()}"
