"""Video in and out: read frames from a file or folder, write MP4 and GIF atomically.

Both directions are verified, because OpenCV reports neither kind of failure: a video file whose
later frames do not decode ends early as if it were complete, and ``cv2.VideoWriter`` goes on
"writing" to a full disk. :func:`read_frames` compares the frames decoded with the count the file
declares, and :func:`write_mp4` reopens what it wrote and counts its frames before the file takes
the output's name.
"""

from __future__ import annotations

import errno
import shutil
import sys
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
from PIL import Image

from course_lib import environment
from course_lib.data.toycity import clip
from course_lib.errors import BadInput, DiskFull, MissingData
from course_lib.utils.atomic import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


#: Frames with a shorter side are refused: the smallest anchor of Mask R-CNN's FPN is 32 pixels.
MIN_SIDE = 32


#: Frames with more pixels (Full HD) are downscaled to it. The models see at most 1333 pixels a
#: side anyway, but every detection's mask is pasted at full frame size: an 8000x8000 frame with
#: 100 detections would need 25 GB.
MAX_PIXELS = 1920 * 1080


def sample_video() -> Path | None:
    """OpenCV's ``vtest.avi`` where it can be found, else None: ``$COURSE_SAMPLE_VIDEO``, the
    repository's ``.cache/opencv-doc`` (``make vtest`` puts it there) or the installed package."""
    return next((path for path in environment.sample_video_candidates() if path.is_file()), None)


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
    A video file that stops decoding before the frame count it declares (cut short, or damaged)
    raises :class:`BadInput` once its last decodable frame is read: the contract is every frame or
    an error, so a writer downstream (:func:`write_mp4`) leaves no shorter output behind.
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
        declared, decoded = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0
        while ok:
            yield f"{source} (a frame)", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            decoded += 1
            ok, bgr = capture.read()
        if decoded < declared:
            raise BadInput(
                f"{source}: decoding stopped after frame {decoded} of the {declared} the file declares (cut short or "
                f"damaged); copy it again, or keep the frames that decode with "
                f"`ffmpeg -i {source.name} -c:v libx264 -pix_fmt yuv420p repaired.mp4`"
            )
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


def count_frames(path: Path) -> int:
    """The frames OpenCV decodes from the video file ``path`` (0 if it cannot open it)."""
    capture = cv2.VideoCapture(str(path))
    try:
        count = 0
        while capture.isOpened() and capture.grab():
            count += 1
        return count
    finally:
        capture.release()


def _not_a_folder(path: str | Path) -> Path:
    """``path`` as a Path; :class:`BadInput` if it is a folder (checked before anything is written)."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{path} is a folder: give the video a file name, e.g. {path / 'annotated.mp4'}")
    return path


def _disk_full(path: Path, detail: str) -> DiskFull:
    return DiskFull(f"no space left on the disk of {path.parent} ({detail}): {path.name} was not written and an "
                    "earlier file of that name is unchanged; free some space or write elsewhere")


def _not_written(path: Path, tmp: Path, frame_bytes: int, what: str) -> Exception:
    """The error for a video that could not be written to ``tmp`` (beside ``path``): :class:`DiskFull`
    when its disk has less room left than one raw frame, :class:`BadInput` when no file can be created
    there (a read-only folder or disk), else a ``RuntimeError`` that says ``what`` went wrong."""
    free = shutil.disk_usage(tmp.parent).free
    if free < frame_bytes:
        return _disk_full(path, f"{free} bytes free; {what}")
    try:
        tmp.open("ab").close()
    except OSError as error:
        return BadInput(f"cannot write {path} ({error.strerror}): choose a writable folder")
    return RuntimeError(f"OpenCV cannot write {path}: {what}")


def write_mp4(frames: Iterable[np.ndarray], path: str | Path, fps: float) -> Path:
    """Write RGB uint8 frames (all the same size) as an MP4 (``mp4v``, playable by OpenCV and VLC).

    The file appears under ``path`` only once every frame is written and OpenCV decodes the same
    number back from it (:mod:`course_lib.utils.atomic`): an error on the way, or a file cut short
    by a full disk (:class:`DiskFull`), leaves an earlier file there untouched and no partial video.
    """
    path = _not_a_folder(path)
    writer, written = None, 0
    with atomic_path(path) as tmp:
        try:
            for frame in frames:
                if writer is None:
                    height, width = frame.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                    if not writer.isOpened():
                        raise _not_written(path, tmp, frame.nbytes, "its video writer did not open (no MPEG-4 encoder?)")
                if frame.shape[:2] != (height, width):  # OpenCV would drop such a frame without a word
                    raise BadInput(f"a frame of {frame.shape[1]}x{frame.shape[0]} pixels in a {width}x{height} video: "
                                   "every frame must have the size of the first")
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                written += 1
        finally:
            if writer is not None:
                writer.release()
        if writer is None:
            raise ValueError("no frames to write")
        decoded = count_frames(tmp)
        if decoded != written:
            raise _not_written(path, tmp, height * width * 3, f"{decoded} of its {written} frames decode")
    return path


def write_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float, max_width: int = 640) -> Path:
    """Write RGB frames as a looping GIF (for the book), downscaled to at most ``max_width`` pixels."""
    if not frames:
        raise ValueError("no frames to write")
    path = _not_a_folder(path)
    scale = min(1.0, max_width / frames[0].shape[1])
    images = [Image.fromarray(f).resize((round(f.shape[1] * scale), round(f.shape[0] * scale)), Image.BILINEAR) for f in frames]
    try:
        with atomic_path(path) as tmp:
            images[0].save(tmp, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    except OSError as error:  # unlike OpenCV, Pillow reports a full disk
        if error.errno != errno.ENOSPC:
            raise
        raise _disk_full(path, error.strerror) from None
    return path


def write_toycity_clip(path: str | Path, seed: int = 0, num_frames: int = 40, height: int = 256, width: int = 512,
                       fps: float = 25.0) -> tuple[Path, list[dict]]:
    """Write a ToyCity clip as an MP4 (an offline input for the demo); also return its targets."""
    frames = clip(seed, num_frames, height, width, fps=fps)
    return write_mp4((image for image, _ in frames), path, fps), [target for _, target in frames]
