"""The video pipeline: decode, detect, track, draw and encode a stream of frames, and say where the time went.

Decoding and encoding run on worker threads, each behind a bounded queue, so that OpenCV's decoder
and encoder (C++ code that releases Python's GIL) work while the model runs on the next frame; the
main thread preprocesses, runs the model, pastes its masks and tracks, one frame after the other,
and hands each frame with its detections to the encoder's thread, which draws them (torch and PIL
release the GIL too) before encoding. ``serial=True`` runs everything on the main thread, one
stage after another.

The :class:`Budget` says where the time went, accounted as :data:`ACCOUNTING` says.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from course_lib.environment import model_device
from course_lib.tracking.annotate import draw_instances, side_by_side
from course_lib.tracking.track import Tracker, tracks_to_frame
from course_lib.modeling.stage_timing import stage_timer

#: The stages of a frame's trip, in order.
STAGES = ("decode", "preprocess", "model", "paste", "track", "draw", "encode")
#: The stages that run on the worker threads when streaming (drawing on the encoder's).
WORKER_STAGES = ("decode", "draw", "encode")
#: How the budget counts threads that overlap.
ACCOUNTING = ("Serial accounting, per thread: each stage's seconds are summed over frames on the thread that ran it. "
              "Serial, the seven stages add up to the wall time. Streaming, the main thread's four stages (preprocess, "
              "model, paste, track) plus its waiting (for a decoded frame, for room in the encoder's queue, for the "
              "encoder to finish) add up to the wall time; decode is the busy time of the decoder's thread, draw and "
              "encode that of the encoder's, overlapped with it.")
#: Frames each queue holds: enough to absorb a slow frame, few enough to keep memory flat.
QUEUE_FRAMES = 4


class StageClock:
    """Seconds per stage of :data:`STAGES` (and ``wait``), summed: ``with clock("model"): ...``.

    Each stage is written by one thread only, so the threads need no lock.
    """

    def __init__(self) -> None:
        self.seconds = dict.fromkeys((*STAGES, "wait"), 0.0)
        self.frames = 0

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start


class Detect(Protocol):
    """``detect(frames, clock) -> detections``: one dict per ``[H, W, 3]`` uint8 RGB frame (``boxes``,
    ``labels``, ``scores``, ``masks [N, 1, H, W]`` at the frame's size), timing ``preprocess``,
    ``model`` and ``paste`` on ``clock``."""

    def __call__(self, frames: Sequence[np.ndarray], clock: StageClock) -> list[dict[str, torch.Tensor]]: ...


def eager_detector(model: nn.Module) -> Detect:
    """The :class:`Detect` of a torchvision Mask R-CNN in eval mode (with its test-time settings applied).

    Frames go in at their own size: the model's transform resizes them to the size it was trained
    at and pastes the masks back at the frame's size, the paste timed apart by
    :func:`course_lib.modeling.stage_timing.stage_timer`.
    """
    device = model_device(model)

    @torch.inference_mode()
    def detect(frames: Sequence[np.ndarray], clock: StageClock) -> list[dict[str, torch.Tensor]]:
        with clock("preprocess"):
            images = [torch.from_numpy(frame).to(device).permute(2, 0, 1).float().div_(255) for frame in frames]
        with stage_timer(model) as stages, clock("model"):
            outputs = [{key: value.cpu() for key, value in output.items()} for output in model(images)]
        clock.seconds["model"] -= stages["paste"]  # transform.postprocess, inside the forward
        clock.seconds["paste"] += stages["paste"]
        return outputs

    return detect


@dataclasses.dataclass
class Budget:
    """Where a video's time went: ``seconds`` per stage (and ``wait``), ``frames``, ``wall_s``."""

    seconds: dict[str, float]
    frames: int
    wall_s: float
    serial: bool

    def accounted_s(self) -> float:
        """The seconds that add up to :attr:`wall_s` (:data:`ACCOUNTING`)."""
        if self.serial:
            return sum(self.seconds[stage] for stage in STAGES)
        return sum(s for stage, s in self.seconds.items() if stage not in WORKER_STAGES)

    def rows(self) -> list[dict]:
        """Per stage: ``ms_per_frame``, ``share`` of the wall time, and whether it ``overlapped`` the main thread."""
        frames = max(self.frames, 1)
        names = (*STAGES, *(() if self.serial else ("wait",)))
        return [{"stage": stage, "ms_per_frame": 1e3 * self.seconds[stage] / frames, "share": self.seconds[stage] / self.wall_s,
                 "overlapped": stage in WORKER_STAGES and not self.serial} for stage in names]

    def as_dict(self) -> dict:
        return {"frames": self.frames, "wall_s": self.wall_s, "fps": self.frames / self.wall_s,
                "pipeline": "serial" if self.serial else "streaming", "accounted_s": self.accounted_s(), "accounting": ACCOUNTING,
                "stages": self.rows()}

    def table(self) -> str:
        """The budget as lines of text, one per stage, then the frame rate."""
        lines = [f"{'stage':<11}{'ms/frame':>9}{'share':>8}"]
        for row in self.rows():
            note = "  (own thread, overlapped)" if row["overlapped"] else ""
            lines.append(f"{row['stage']:<11}{row['ms_per_frame']:>9.1f}{row['share']:>8.0%}{note}")
        lines.append(f"{self.frames} frames in {self.wall_s:.2f} s: {self.frames / self.wall_s:.1f} frames per second")
        return "\n".join(lines)


class _Stop(Exception):
    """Raised inside the encoder's frame stream when the main thread gave up: the writer then keeps nothing."""


_END = object()


def _timed_stream(frames: Iterable, clock: StageClock, stage: str) -> Iterator:
    """``frames``, with the time spent producing each added to ``stage``."""
    iterator = iter(frames)
    while True:
        with clock(stage):
            item = next(iterator, _END)
        if item is _END:
            return
        yield item


def _untimed(frames: Iterable, clock: StageClock, stage: str) -> Iterator:
    """``frames`` handed to a consumer whose whole time counts as ``stage``: the time spent waiting
    for each frame is taken back out of it."""
    iterator = iter(frames)
    while True:
        start = time.perf_counter()
        item = next(iterator, _END)
        clock.seconds[stage] -= time.perf_counter() - start
        if item is _END:
            return
        yield item


def _queue_stream(source: queue.Queue, clock: StageClock, stage: str) -> Iterator:
    """The items put on ``source`` until ``_END``; an exception put there is raised, waiting counts as ``stage``."""
    while True:
        with clock(stage):
            item = source.get()
        if item is _END:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _put(target: queue.Queue, item: object, stop: threading.Event) -> None:
    """Put ``item`` on ``target``, giving up (:class:`_Stop`) once ``stop`` is set."""
    while not stop.is_set():
        with contextlib.suppress(queue.Full):
            target.put(item, timeout=0.05)
            return
    raise _Stop


def _decoder(frames: Iterable[np.ndarray], out: queue.Queue, clock: StageClock, stop: threading.Event) -> None:
    try:
        for frame in _timed_stream(frames, clock, "decode"):
            _put(out, frame, stop)
        _put(out, _END, stop)
    except _Stop:
        pass
    except BaseException as error:  # handed to the main thread, which raises it
        with contextlib.suppress(_Stop):
            _put(out, error, stop)


def _encoder(write: Callable[[Iterable[np.ndarray]], Path], results: queue.Queue, clock: StageClock, side: bool,
             result: dict) -> None:
    try:
        with clock("encode"):
            drawn = _drawn(_queue_stream(results, StageClock(), "wait"), clock, side)
            result["path"] = write(_untimed(drawn, clock, "encode"))
    except BaseException as error:  # the main thread raises it
        result["error"] = error


def annotate(frames: Iterable[np.ndarray], detect: Detect, track: bool = False, min_score: float = 0.5,
             batch_size: int = 1, clock: StageClock | None = None) -> Iterator[tuple[np.ndarray, dict, np.ndarray]]:
    """Yield ``(frame, result, drawing)`` per frame: :func:`detected`'s, and the result drawn over the frame."""
    clock = clock or StageClock()
    for frame, result in detected(frames, detect, track, min_score, batch_size, clock):
        with clock("draw"):
            drawing = draw_instances(frame, result)
        yield frame, result, drawing


def detected(frames: Iterable[np.ndarray], detect: Detect, track: bool = False, min_score: float = 0.5,
             batch_size: int = 1, clock: StageClock | None = None) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield ``(frame, result)`` per frame: its detections scoring at least ``min_score`` (tracked, with
    ``track_ids``, if ``track``); ``detect`` runs on ``batch_size`` frames at a time, each stage timed on ``clock``.

    One score threshold: ``min_score`` is the cut here and the tracker's (:class:`Tracker`'s own
    default would otherwise drop, silently, detections between the two).
    """
    clock = clock or StageClock()
    tracker = Tracker(min_score=min_score) if track else None
    iterator = iter(frames)
    while batch := [frame for _, frame in zip(range(batch_size), iterator)]:
        for frame, detections in zip(batch, detect(batch, clock)):
            keep = detections["scores"] >= min_score
            result = {key: value[keep] for key, value in detections.items()}
            if tracker is not None:
                with clock("track"):
                    result = tracks_to_frame(tracker.update(result), *frame.shape[:2])
            clock.frames += 1
            yield frame, result


def _drawn(detections: Iterable[tuple[np.ndarray, dict]], clock: StageClock, side: bool) -> Iterator[np.ndarray]:
    """The frames :func:`run` writes: each frame's detections drawn over it, beside the frame if ``side``
    (timed as ``draw``)."""
    for frame, result in detections:
        with clock("draw"):
            drawing = draw_instances(frame, result)
            drawing = side_by_side(frame, drawing) if side else drawing
        yield drawing


def run(frames: Iterable[np.ndarray], detect: Detect, write: Callable[[Iterable[np.ndarray]], Path],
        track: bool = False, min_score: float = 0.5, batch_size: int = 1, side: bool = True,
        serial: bool = False) -> tuple[Path, Budget]:
    """Decode ``frames``, detect, track, draw and ``write`` them: ``(what write returned, the budget)``.

    ``write`` consumes the drawn frames (e.g. :func:`course_lib.tracking.video_io.write_mp4` with its
    path and rate bound) and must keep nothing when its stream raises. An error in any stage, on any
    thread, is raised here once both workers have stopped; Ctrl-C stops them the same way.
    """
    clock, start = StageClock(), time.perf_counter()
    if serial:
        decoded = _timed_stream(frames, clock, "decode")
        with clock("encode"):
            results = detected(decoded, detect, track, min_score, batch_size, clock)
            path = write(_untimed(_drawn(results, clock, side), clock, "encode"))
        return path, Budget(clock.seconds, clock.frames, time.perf_counter() - start, serial)
    stop, result = threading.Event(), {}
    decoded, results = queue.Queue(QUEUE_FRAMES), queue.Queue(QUEUE_FRAMES)
    decoder = threading.Thread(target=_decoder, args=(frames, decoded, clock, stop), daemon=True, name="decode")
    encoder = threading.Thread(target=_encoder, args=(write, results, clock, side, result), daemon=True, name="encode")
    decoder.start()
    encoder.start()
    try:
        for item in detected(_queue_stream(decoded, clock, "wait"), detect, track, min_score, batch_size, clock):
            with clock("wait"):
                _hand_over(results, item, encoder, result)
        with clock("wait"):
            _hand_over(results, _END, encoder, result)
            encoder.join()
    except BaseException:
        with contextlib.suppress(BaseException):
            _hand_over(results, _Stop(), encoder, result)  # the writer's stream raises it: it keeps no partial file
        raise
    finally:
        stop.set()
        decoder.join()
        encoder.join()
    if "error" in result:
        raise result["error"]
    return result["path"], Budget(clock.seconds, clock.frames, time.perf_counter() - start, serial)


def _hand_over(target: queue.Queue, item: object, encoder: threading.Thread, result: dict) -> None:
    """Put ``item`` on the encoder's queue; raise the encoder's error if it stopped first."""
    while encoder.is_alive():
        with contextlib.suppress(queue.Full):
            target.put(item, timeout=0.05)
            return
    raise result.get("error") or RuntimeError("the video encoder stopped before the last frame")
