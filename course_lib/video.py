"""Video in, video out: read frames, run Mask R-CNN in batches, track, draw, write MP4 and GIF.

``python -m course_lib video IN OUT [--track] [--variant NAME] [--model toycity|coco|PATH]``
reads ``IN`` (a video file, or a folder of ``.png``/``.jpg`` frames in name order), draws each
frame's instances (with ``--track``: one colour and id per object, held across frames) and
writes ``OUT`` (``.mp4``, or ``.gif``) with the input on the left and the result on the right.
``python -m course_lib video --toycity clip.mp4`` writes a ToyCity clip to use as an input offline.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from course_lib import runtime, speed, viz
from course_lib.atomic import atomic_path
from course_lib.errors import BadInput, MissingData, WouldOverwrite
from course_lib.classes import CLASSES
from course_lib.track import Tracker, tracks_to_frame

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: Frames with a shorter side are refused: the smallest anchor of Mask R-CNN's FPN is 32 pixels.
MIN_SIDE = 32
#: Frames with more pixels (Full HD) are downscaled to it. The models see at most 1333 pixels a
#: side anyway, but every detection's mask is pasted at full frame size: an 8000x8000 frame with
#: 100 detections would need 25 GB.
MAX_PIXELS = 1920 * 1080

#: OpenCV's sample street video (real pedestrians, 768x576), as Debian's ``opencv-doc`` installs it.
SAMPLE_VIDEO = Path("usr/share/doc/opencv-doc/examples/data/vtest.avi")


def sample_video() -> Path | None:
    """OpenCV's ``vtest.avi`` where it can be found, else None: ``$COURSE_SAMPLE_VIDEO``, the
    repository's ``.cache/opencv-doc`` (``make vtest`` puts it there) or the installed package."""
    candidates = [os.environ.get("COURSE_SAMPLE_VIDEO"), Path(__file__).resolve().parents[1] / ".cache" / "opencv-doc" / SAMPLE_VIDEO,
                  Path("/") / SAMPLE_VIDEO]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


# --------------------------------------------------------------------------- reading


def frame_paths(folder: Path) -> list[Path]:
    """Image files of ``folder`` in name order."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def fit_frame(frame: np.ndarray, where: str) -> np.ndarray:
    """``frame``, downscaled (aspect kept) if it has more than :data:`MAX_PIXELS` pixels.

    Raises :class:`BadInput` for a frame with a side under :data:`MIN_SIDE` pixels.
    """
    height, width = frame.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise BadInput(f"{where} is {width}x{height} pixels: Mask R-CNN needs at least {MIN_SIDE} pixels a side; "
                       "give a larger video or image")
    if height * width <= MAX_PIXELS:
        return frame
    scale = (MAX_PIXELS / (height * width)) ** 0.5
    size = (max(MIN_SIDE, int(width * scale)), max(MIN_SIDE, int(height * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _read_image(path: Path) -> np.ndarray:
    """One frame file -> RGB uint8; :class:`BadInput` if OpenCV cannot read it or a JPEG is cut short
    (OpenCV then only warns and fills the missing part with grey)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise BadInput(f"{path}: OpenCV cannot read this image; re-save it as PNG or JPEG")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        with open(path, "rb") as f:  # a complete JPEG ends with its end-of-image marker FF D9
            f.seek(max(0, path.stat().st_size - 2))
            if f.read() != b"\xff\xd9":
                raise BadInput(f"{path}: this JPEG is cut short (no end-of-image marker); copy or export it again")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_frames(source: str | Path) -> Iterator[np.ndarray]:
    """Yield RGB uint8 ``[H, W, 3]`` frames from a video file or a folder of images, each through
    :func:`fit_frame` (a warning on stderr says when frames are downscaled).

    Raises :class:`MissingData` for a missing path and :class:`BadInput` for a file OpenCV cannot
    decode, a truncated JPEG, a folder whose frames differ in size, a frame under
    :data:`MIN_SIDE` pixels a side or a source without frames, each saying what to do about it.
    """
    warned = False
    for where, frame in _decoded_frames(Path(source)):
        fitted = fit_frame(frame, where)
        if fitted is not frame and not warned:
            print(f"warning: {where} is {frame.shape[1]}x{frame.shape[0]} pixels; processing the frames at "
                  f"{fitted.shape[1]}x{fitted.shape[0]} (at most {MAX_PIXELS} pixels each)", file=sys.stderr)
            warned = True
        yield fitted


def _decoded_frames(source: Path) -> Iterator[tuple[str, np.ndarray]]:
    """``(where, RGB frame)`` pairs of :func:`read_frames`, at the size they were stored."""
    if not source.exists():
        raise MissingData(f"{source}: no such video file or frame folder")
    if source.is_dir():
        paths = frame_paths(source)
        if not paths:
            raise BadInput(f"{source} holds no frames: expected image files ending in {', '.join(IMAGE_SUFFIXES)}")
        first_size = None
        for path in paths:
            frame = _read_image(path)
            first_size = first_size or frame.shape[:2]
            if frame.shape[:2] != first_size:
                raise BadInput(f"{path} is {frame.shape[1]}x{frame.shape[0]} pixels but {paths[0].name} is "
                               f"{first_size[1]}x{first_size[0]}: a video's frames share one size; resize them to match")
            yield str(path), frame
        return
    capture = cv2.VideoCapture(str(source))
    try:
        ok, bgr = capture.read() if capture.isOpened() else (False, None)
        if not ok:
            raise BadInput(
                f"{source}: OpenCV cannot decode a frame of this file (not a video, an unsupported codec, "
                f"or no frames). Convert it, e.g. `ffmpeg -i {source.name} -c:v libx264 -pix_fmt yuv420p out.mp4`, "
                "or extract its frames into a folder of PNGs."
            )
        while ok:
            yield f"{source} (a frame)", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            ok, bgr = capture.read()
    finally:
        capture.release()


def frames_per_second(source: str | Path, default: float = 10.0) -> float:
    """The frame rate a video file declares (``default`` for a frame folder or an unknown rate)."""
    source = Path(source)
    if source.is_dir():
        return default
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return fps if fps and fps > 0 else default


# --------------------------------------------------------------------------- writing


def write_mp4(frames: Iterable[np.ndarray], path: str | Path, fps: float) -> Path:
    """Write RGB uint8 frames (all the same size) as an MP4 (``mp4v``, playable by OpenCV and VLC).

    The file appears under ``path`` only once every frame is written (:mod:`course_lib.atomic`):
    an error on the way leaves an earlier file there untouched and no partial video.
    """
    path = Path(path)
    writer = None
    with atomic_path(path) as tmp:
        try:
            for frame in frames:
                if writer is None:
                    height, width = frame.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                    if not writer.isOpened():
                        raise RuntimeError(f"OpenCV cannot write {path}: this OpenCV build has no MPEG-4 encoder")
                if frame.shape[:2] != (height, width):  # OpenCV would drop such a frame without a word
                    raise BadInput(f"a frame of {frame.shape[1]}x{frame.shape[0]} pixels in a {width}x{height} video: "
                                   "every frame must have the size of the first")
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            if writer is not None:
                writer.release()
        if writer is None:
            raise ValueError("no frames to write")
    return path


def write_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float, max_width: int = 640) -> Path:
    """Write RGB frames as a looping GIF (for the book), downscaled to at most ``max_width`` pixels."""
    if not frames:
        raise ValueError("no frames to write")
    path = Path(path)
    scale = min(1.0, max_width / frames[0].shape[1])
    images = [Image.fromarray(f).resize((round(f.shape[1] * scale), round(f.shape[0] * scale)), Image.BILINEAR) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path


def write_toycity_clip(path: str | Path, seed: int = 0, num_frames: int = 40, height: int = 256, width: int = 512,
                       fps: float = 25.0) -> tuple[Path, list[dict]]:
    """Write a ToyCity clip as an MP4 (an offline input for the demo); also return its targets."""
    from course_lib.toycity import clip

    frames = clip(seed, num_frames, height, width, fps=fps)
    return write_mp4((image for image, _ in frames), path, fps), [target for _, target in frames]


# --------------------------------------------------------------------------- drawing


def draw_instances(image: np.ndarray, result: dict, alpha: float = 0.5) -> np.ndarray:
    """``image`` (RGB uint8 ``[H, W, 3]``) with masks, boxes and labels drawn; a new array.

    ``result``: ``boxes [N, 4]``, ``labels [N]``, optional ``masks`` (``[N, H, W]`` or
    ``[N, 1, H, W]``, thresholded at 0.5) and ``track_ids [N]``. With track ids, each object has
    its track's colour and ``class #id``; otherwise the class colour and the score. Drawn by
    :func:`course_lib.viz.draw_masks_and_boxes`.
    """
    from course_lib.track import track_color

    names = [CLASSES[int(label)] for label in result["labels"]]
    if "track_ids" in result:
        colours = [track_color(int(i)) for i in result["track_ids"]]
        texts = [f"{name} #{int(i)}" for name, i in zip(names, result["track_ids"])]
    else:
        colours = viz.class_colors(result["labels"])
        texts = [f"{name} {float(score):.2f}" for name, score in zip(names, result["scores"])]
    canvas = viz.draw_masks_and_boxes(torch.from_numpy(image).permute(2, 0, 1), result.get("masks"), result["boxes"],
                                      colours, texts, alpha=alpha)
    return np.ascontiguousarray(canvas.permute(1, 2, 0).numpy())


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """Two RGB frames of the same height next to each other, separated by a white bar."""
    bar = np.full((left.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([left, bar, right], axis=1)


# --------------------------------------------------------------------------- the pipeline


def batched(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.inference_mode()
def predict_frames(model: torch.nn.Module, frames: Iterable[np.ndarray], batch_size: int = 1,
                   min_score: float = 0.5) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield ``(frame, detections)`` per frame, running ``model`` on ``batch_size`` frames at a time.

    Detections scoring below ``min_score`` are dropped; tensors come back on the CPU.
    """
    from course_lib.bench import _model_device  # a model's parameters' device, or an exported predictor's

    device = _model_device(model)
    model.eval()
    for batch in batched(frames, batch_size):
        images = [torch.from_numpy(f).permute(2, 0, 1).to(device, torch.float32) / 255 for f in batch]
        for frame, output in zip(batch, model(images)):
            keep = output["scores"] >= min_score
            yield frame, {key: value[keep].cpu() for key, value in output.items()}


def annotate(model: torch.nn.Module, frames: Iterable[np.ndarray], tracker: Tracker | None = None,
             batch_size: int = 1, min_score: float = 0.5) -> Iterator[tuple[np.ndarray, dict, np.ndarray]]:
    """Yield ``(frame, result, drawing)``: detections (tracked if ``tracker`` is given) and their drawing."""
    for frame, detections in predict_frames(model, frames, batch_size, min_score):
        result = detections
        if tracker is not None:
            result = tracks_to_frame(tracker.update(detections), *frame.shape[:2])
        yield frame, result, draw_instances(frame, result)


def cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib video", description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", help="video file or folder of frames")
    parser.add_argument("output", help="output .mp4 or .gif (with --toycity: where to write the clip)")
    parser.add_argument("--track", action="store_true", help="track instances: stable ids and colours")
    parser.add_argument("--variant", default="baseline", help=f"inference variant: {', '.join(speed.VARIANTS)}")
    parser.add_argument("--model", default="toycity", help="toycity (default), coco, or a checkpoint path")
    parser.add_argument("--arch", default="toycity_small", help="architecture of a checkpoint given as --model")
    parser.add_argument("--runtime", default=None,
                        help="run exported: an .onnx / OpenVINO .xml file from `python -m course_lib export`, or a runtime "
                             "(ort, ov_fp32, ov_bf16, ov_int8, ov_int8_bf16) exported now for the video's frame size with --variant's settings")
    parser.add_argument("--calibration", type=int, default=32, help="ToyCity training scenes that calibrate --runtime ov_int8")
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=None, help="frames per forward pass (default: the variant's)")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--no-side-by-side", action="store_true", help="write the annotated frames only")
    parser.add_argument("--toycity", action="store_true", help="write a generated ToyCity clip to OUTPUT and stop")
    parser.add_argument("--seed", type=int, default=0, help="ToyCity clip seed (with --toycity)")
    parser.add_argument("--frames", type=int, default=40, help="ToyCity clip length (with --toycity)")
    args = parser.parse_args(argv)
    if args.toycity:
        path, _ = write_toycity_clip(args.output, seed=args.seed, num_frames=args.frames)
        print("wrote", path)
        return 0
    if args.input is None:
        parser.error("give an INPUT video or frame folder (or --toycity to generate one)")
    from course_lib import zoo

    source, output = Path(args.input), Path(args.output)
    if output.resolve() == source.resolve() or (output.exists() and source.exists() and output.samefile(source)):
        raise WouldOverwrite(f"the output {args.output} is the input video: writing it would destroy the clip; "
                             "give another output name")
    variant = speed.get(args.variant)
    frames = read_frames(args.input)
    first = next(frames)  # fails here, with read_frames' message, on a bad input
    fps = frames_per_second(args.input)
    model = zoo.from_command_line(args.model, args.arch, runtime.device())
    description = f"{args.model} model, variant {variant.name}"
    if args.runtime:
        try:
            model, description = _exported(model, args.runtime, variant, first.shape[:2], args.calibration)
        except (FileNotFoundError, ValueError, ImportError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        variant = speed.get("baseline")  # the settings are in the exported graph
    runtime.print_banner(description, str(args.input))

    def all_frames() -> Iterator[np.ndarray]:
        yield first
        yield from frames

    stream = (f for i, f in enumerate(all_frames()) if args.max_frames is None or i < args.max_frames)
    with (speed.apply(model, variant) if not args.runtime else contextlib.nullcontext()):
        results = annotate(model, stream, Tracker() if args.track else None, args.batch_size or variant.batch_size, args.min_score)
        drawn = (d if args.no_side_by_side else side_by_side(f, d) for f, _, d in tqdm(results, desc="frames", unit="frame"))
        if str(args.output).lower().endswith(".gif"):
            path = write_gif(list(drawn), args.output, fps)
        else:
            path = write_mp4(drawn, args.output, fps)
    print("wrote", path)
    return 0


def _exported(model: torch.nn.Module, spec: str, variant: speed.Variant, size: tuple[int, int], calibration: int):
    """(predictor, description) for ``--runtime``: an exported file, or a runtime exported now for ``size``."""
    from course_lib import deploy

    if not deploy.available():
        raise ImportError("--runtime needs ONNX, ONNX Runtime, OpenVINO and NNCF: pip install 'course_lib[deploy]'")
    from course_lib.deploy import variants
    from course_lib.toycity import ToyCityDataset

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
