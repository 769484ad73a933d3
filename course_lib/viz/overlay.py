"""Instances drawn over an image in class colours: the one drawer of the library."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from PIL import ImageColor
from torchvision.utils import draw_bounding_boxes

from course_lib.classes import CLASS_COLORS, CLASSES
from course_lib.structures.masks import binary_masks

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn: the video path draws none
    from matplotlib.figure import Figure

Color = str | tuple[int, int, int]


def class_colors(labels: Tensor, class_names: Sequence[str] = CLASSES) -> list[tuple[int, int, int]]:
    """The class colour (:data:`course_lib.classes.CLASS_COLORS`) of each label in ``labels [N]``."""
    return [CLASS_COLORS[class_names[int(label)]] for label in labels]


def draw_masks_and_boxes(image: Tensor, masks: Tensor | None = None, boxes: Tensor | None = None,
                         colors: Color | Sequence[Color] | None = None, labels: Sequence[str] | None = None,
                         alpha: float = 0.5, width: int = 1) -> Tensor:
    """The library's one instance drawer: uint8 ``[3, H, W]`` of ``image`` with masks and boxes drawn.

    ``image``: uint8 ``[3, H, W]`` or float in [0, 1]. ``masks``: ``[N, H, W]`` (or ``[N, 1, H, W]``),
    boolean or soft (thresholded at 0.5), blended in with opacity ``alpha``. ``boxes``: ``[N, 4]``
    ``(x1, y1, x2, y2)`` in pixels, outlined ``width`` pixels wide, each with its text from
    ``labels`` at its top-left corner. ``colors`` (RGB tuples or colour names): one per instance,
    one for all, or ``None`` for the class palette in order. Masks are blended by :func:`blend_masks` (the pixels of
    ``torchvision.utils.draw_segmentation_masks``), boxes drawn by ``draw_bounding_boxes``.
    """
    canvas = (image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).to(torch.uint8)).cpu()
    if masks is not None and len(masks):
        canvas = blend_masks(canvas, binary_masks(masks).cpu(), _rgb(colors, len(masks)), alpha)
    if boxes is not None and len(boxes):
        canvas = draw_bounding_boxes(canvas, boxes.cpu().float(), labels=labels, colors=_rgb(colors, len(boxes)), width=width)
    return canvas


def _rgb(colors: Color | Sequence[Color] | None, count: int) -> list[tuple[int, int, int]]:
    """``count`` RGB tuples from ``colors`` (see :func:`draw_masks_and_boxes`)."""
    if colors is None:
        palette = list(CLASS_COLORS.values())
        return [palette[i % len(palette)] for i in range(count)]
    if isinstance(colors, str) or (isinstance(colors, tuple) and len(colors) == 3 and isinstance(colors[0], int)):
        colors = [colors] * count
    return [ImageColor.getrgb(c) if isinstance(c, str) else tuple(int(v) for v in c) for c in colors]


def blend_masks(image: Tensor, masks: Tensor, colors: Sequence[tuple[int, int, int]], alpha: float) -> Tensor:
    """uint8 ``image [3, H, W]`` with boolean ``masks [N, H, W]`` blended in at opacity ``alpha``, mask ``k``
    in ``colors[k]``: the pixels of ``torchvision.utils.draw_segmentation_masks`` (which also blends a
    pixel under two or more masks with black), in one pass over the frame instead of one per mask.
    """
    count = masks.sum(0)
    index = (masks * torch.arange(1, len(masks) + 1, dtype=torch.int32)[:, None, None]).amax(0)  # 1 + its mask's index
    palette = torch.tensor([(0, 0, 0), *colors], dtype=torch.uint8)
    painted = torch.where(count == 0, image, palette[index * (count == 1)].permute(2, 0, 1))
    return (image * (1 - alpha) + painted * alpha).to(torch.uint8)


def instance_colors(labels: Tensor, class_names: Sequence[str] = CLASSES) -> list[tuple[int, int, int]]:
    """One colour per instance: its class colour, lightened a little more for each further instance of the class."""
    seen: dict[int, int] = {}
    colors = []
    for label in labels.tolist():
        k = seen.get(label, 0)
        seen[label] = k + 1
        base = np.array(CLASS_COLORS[class_names[label]], dtype=float)
        mix = min(0.15 * k, 0.6)  # mix towards white so same-class neighbours stay apart
        colors.append(tuple(int(v) for v in base * (1 - mix) + 255 * mix))
    return colors


def detections_overlay(image: Tensor, detections: Mapping[str, Tensor], class_names: Sequence[str] = CLASSES, score_threshold: float = 0.5, mask_threshold: float = 0.5, title: str = "") -> Figure:
    """Masks, boxes and labels of the detections above ``score_threshold`` over the image.

    ``detections`` is a model output dict (boxes, labels, scores, masks ``[D, 1, H, W]``). Where
    masks overlap, the more confident instance is painted last and so stays visible.
    """
    from matplotlib.figure import Figure

    from course_lib.viz.stages import show_image

    keep = (detections["scores"] >= score_threshold).nonzero().flatten()
    keep = keep[detections["scores"][keep].argsort()]  # ascending: the most confident is drawn last
    boxes, labels, scores = detections["boxes"][keep], detections["labels"][keep], detections["scores"][keep]
    colors = instance_colors(labels, class_names)
    canvas = draw_masks_and_boxes(image, detections["masks"][keep, 0] >= mask_threshold, boxes, colors, alpha=0.6, width=2)
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    show_image(ax, canvas.float() / 255, title or f"{len(keep)} detections with score >= {score_threshold}")
    for box, label, score, color in zip(boxes.tolist(), labels.tolist(), scores.tolist(), colors):
        ax.text(box[0], box[1], f"{class_names[label]} {score:.2f}", fontsize=7, color="white", va="bottom",
                bbox=dict(facecolor=np.array(color) / 255, edgecolor="none", pad=1, alpha=0.85))
    return fig
