"""Annotate frames: run Mask R-CNN over them in batches and draw each result.

:func:`predict_frames` turns a stream of RGB frames into detections, :func:`draw_instances` draws
one frame's; the timed video pipeline (threads, tracking, the budget) is
:mod:`course_lib.tracking.pipeline`, reading and writing video :mod:`course_lib.tracking.video_io`,
the command line ``python -m course_lib video`` :mod:`course_lib.cli.video`.
"""

from __future__ import annotations

import itertools
from typing import Iterable, Iterator

import numpy as np
import torch

from course_lib.classes import CLASSES
from course_lib.evaluation.inference import predict_batches
from course_lib.tracking.track import track_color
from course_lib.viz import overlay

# --------------------------------------------------------------------------- drawing


def draw_instances(image: np.ndarray, result: dict, alpha: float = 0.5) -> np.ndarray:
    """``image`` (RGB uint8 ``[H, W, 3]``) with masks, boxes and labels drawn; a new array.

    ``result``: ``boxes [N, 4]``, ``labels [N]``, optional ``masks`` (``[N, H, W]`` or
    ``[N, 1, H, W]``, thresholded at 0.5) and ``track_ids [N]``. With track ids, each object has
    its track's colour and ``class #id``; otherwise the class colour and the score. Drawn by
    :func:`course_lib.viz.overlay.draw_masks_and_boxes`.
    """
    names = [CLASSES[int(label)] for label in result["labels"]]
    if "track_ids" in result:
        colours = [track_color(int(i)) for i in result["track_ids"]]
        texts = [f"{name} #{int(i)}" for name, i in zip(names, result["track_ids"])]
    else:
        colours = overlay.class_colors(result["labels"])
        texts = [f"{name} {float(score):.2f}" for name, score in zip(names, result["scores"])]
    canvas = overlay.draw_masks_and_boxes(torch.from_numpy(image).permute(2, 0, 1), result.get("masks"), result["boxes"],
                                      colours, texts, alpha=alpha)
    return np.ascontiguousarray(canvas.permute(1, 2, 0).numpy())


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """Two RGB frames of the same height next to each other, separated by a white bar."""
    bar = np.full((left.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([left, bar, right], axis=1)


# --------------------------------------------------------------------------- prediction


def predict_frames(model: torch.nn.Module, frames: Iterable[np.ndarray], batch_size: int = 1,
                   min_score: float = 0.5) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield ``(frame, detections)`` per ``[H, W, 3]`` uint8 RGB frame, running ``model`` on ``batch_size``
    frames at a time (:func:`course_lib.evaluation.inference.predict_batches`).

    Detections scoring below ``min_score`` are dropped; tensors come back on the CPU.
    """
    model.eval()
    frames, copies = itertools.tee(frames)  # holds at most one batch of frames
    images = (torch.from_numpy(frame).permute(2, 0, 1) for frame in copies)
    for frame, output in zip(frames, predict_batches(model, images, batch_size)):
        keep = output["scores"] >= min_score
        yield frame, {key: value[keep] for key, value in output.items()}
