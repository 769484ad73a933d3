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
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from course_lib import runtime, speed
from course_lib.classes import CLASS_COLORS, CLASSES
from course_lib.track import Tracker, tracks_to_frame

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


# --------------------------------------------------------------------------- reading


def frame_paths(folder: Path) -> list[Path]:
    """Image files of ``folder`` in name order."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_frames(source: str | Path) -> Iterator[np.ndarray]:
    """Yield RGB uint8 ``[H, W, 3]`` frames from a video file or a folder of images.

    Raises ``FileNotFoundError`` for a missing path and ``ValueError`` for a file OpenCV cannot
    decode or a source without frames, each saying what to do about it.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such video file or frame folder")
    if source.is_dir():
        paths = frame_paths(source)
        if not paths:
            raise ValueError(f"{source} holds no frames: expected image files ending in {', '.join(IMAGE_SUFFIXES)}")
        for path in paths:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{path}: OpenCV cannot read this image; re-save it as PNG or JPEG")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return
    capture = cv2.VideoCapture(str(source))
    try:
        ok, bgr = capture.read() if capture.isOpened() else (False, None)
        if not ok:
            raise ValueError(
                f"{source}: OpenCV cannot decode a frame of this file (not a video, an unsupported codec, "
                f"or no frames). Convert it, e.g. `ffmpeg -i {source.name} -c:v libx264 -pix_fmt yuv420p out.mp4`, "
                "or extract its frames into a folder of PNGs."
            )
        while ok:
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
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
    """Write RGB uint8 frames (all the same size) as an MP4 (``mp4v``, playable by OpenCV and VLC)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for frame in frames:
            if writer is None:
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                if not writer.isOpened():
                    raise RuntimeError(f"OpenCV cannot write {path}: this OpenCV build has no MPEG-4 encoder")
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
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = min(1.0, max_width / frames[0].shape[1])
    images = [Image.fromarray(f).resize((round(f.shape[1] * scale), round(f.shape[0] * scale)), Image.BILINEAR) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
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
    its track's colour and ``class #id``; otherwise the class colour and the score.
    """
    from course_lib.track import track_color

    out = image.astype(np.float32)
    has_ids = "track_ids" in result
    colours = [
        track_color(int(i)) if has_ids else CLASS_COLORS[CLASSES[int(label)]]
        for i, label in zip(result.get("track_ids", result["labels"]), result["labels"])
    ]
    masks = result.get("masks")
    if masks is not None and len(masks):
        masks = (masks[:, 0] if masks.dim() == 4 else masks) > 0.5
        for mask, colour in zip(masks.cpu().numpy(), colours):
            out[mask] = (1 - alpha) * out[mask] + alpha * np.array(colour, np.float32)
    out = out.astype(np.uint8)
    for k, (box, colour) in enumerate(zip(result["boxes"].tolist(), colours)):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, 1)
        name = CLASSES[int(result["labels"][k])]
        text = f"{name} #{int(result['track_ids'][k])}" if has_ids else f"{name} {float(result['scores'][k]):.2f}"
        cv2.putText(out, text, (x0, max(y0 - 3, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
    return out


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

    variant = speed.get(args.variant)
    frames = read_frames(args.input)
    try:
        first = next(frames)  # fails here, with read_frames' message, on a bad input
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
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
