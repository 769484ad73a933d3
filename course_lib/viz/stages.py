"""Figures of Week 1: what each stage of Mask R-CNN holds, drawn with matplotlib.

Every plotting function returns a ``matplotlib.figure.Figure`` built without pyplot, so a notebook
shows it exactly once (as the cell's value) and a test can count its axes and artists; the
explorables of :mod:`course_lib.viz.widgets` draw their views with them. Images are
``Tensor[3, H, W]`` in [0, 1]; boxes are ``(x1, y1, x2, y2)`` in the image's pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from course_lib.classes import CLASSES
from course_lib.scratch.roi import align_sampling_grid, pool_bins


def show_image(ax, image: Tensor | None, title: str = "") -> None:
    if image is not None:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_box(ax, box: Sequence[float], color, linewidth: float = 1.0, alpha: float = 1.0) -> Rectangle:
    x1, y1, x2, y2 = [float(v) for v in box]
    return ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=linewidth, alpha=alpha))


# --- feature maps, stride, receptive field -----------------------------------------------------


def feature_channels(features: Mapping[str, Tensor], channels: Sequence[int] = (0, 1, 2, 3)) -> Figure:
    """A grid: one row per FPN level, one column per chosen channel of that level's ``[1, C, h, w]`` map."""
    fig = Figure(figsize=(2.4 * len(channels), 1.5 * len(features)), layout="constrained")
    axes = fig.subplots(len(features), len(channels), squeeze=False)
    for row, (name, fmap) in zip(axes, features.items()):
        for ax, c in zip(row, channels):
            ax.imshow(fmap[0, c].numpy(), cmap="viridis")
            show_image(ax, None, f"level {name} ch {c}  {fmap.shape[-2]}x{fmap.shape[-1]}")
    return fig


def stride_grid(image: Tensor, stride: int, position: tuple[int, int], receptive_field: Tensor | None = None) -> Figure:
    """The image with the stride grid, one highlighted cell ``position = (p_x, p_y)``, and optionally a
    receptive-field map ``Tensor[H, W]`` (e.g. gradient magnitudes) overlaid."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    show_image(ax, image, f"stride {stride}: cell ({position[0]}, {position[1]}) and its anchor centre")
    height, width = image.shape[-2:]
    if receptive_field is not None:
        ax.imshow(receptive_field.numpy(), cmap="magma", alpha=0.55, extent=(-0.5, width - 0.5, height - 0.5, -0.5))
    for x in range(0, width, stride):
        ax.axvline(x, color="white", linewidth=0.3, alpha=0.6)
    for y in range(0, height, stride):
        ax.axhline(y, color="white", linewidth=0.3, alpha=0.6)
    px, py = position
    draw_box(ax, (px * stride, py * stride, (px + 1) * stride, (py + 1) * stride), "yellow", 2.0)
    ax.plot([px * stride], [py * stride], "r+", markersize=12)  # anchors are centred on the cell's corner
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    return fig


# --- anchors -----------------------------------------------------------------------------------


def anchors_at_position(anchors: Tensor, image: Tensor | None = None, image_size: tuple[int, int] | None = None, title: str = "") -> Figure:
    """The ``Tensor[A, 4]`` anchors of one position, coloured by index (same centre, different shapes)."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    show_image(ax, image, title or f"{len(anchors)} anchors at one position")
    colors = colormaps["tab10"](np.arange(len(anchors)) % 10)
    for box, color in zip(anchors, colors):
        width, height = (box[2:] - box[:2]).tolist()
        draw_box(ax, box, color, 1.5).set_label(f"{width:.0f} x {height:.0f}")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), title="w x h", title_fontsize=7)
    extent = torch.cat([anchors.reshape(-1, 2), torch.tensor([[0.0, 0.0]])])
    if image_size is not None:
        extent = torch.cat([extent, torch.tensor([[image_size[1], image_size[0]]], dtype=extent.dtype)])
    (x_min, y_min), (x_max, y_max) = extent.min(0).values.tolist(), extent.max(0).values.tolist()
    ax.set_xlim(x_min - 10, x_max + 10)
    ax.set_ylim(y_max + 10, y_min - 10)
    if image_size is not None:  # the image frame: anchors may stick out of it
        frame = Rectangle((0, 0), image_size[1], image_size[0], facecolor="0.92", edgecolor="black", zorder=0)
        ax.add_patch(frame)
    ax.set_aspect("equal")
    return fig


def anchor_grid(anchors: Tensor, anchors_per_position: int, image: Tensor, every: int = 4) -> Figure:
    """All anchor centres of one level as dots, plus the full anchor set of every ``every``-th position."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    show_image(ax, image, f"{len(anchors)} anchors = {len(anchors) // anchors_per_position} positions x {anchors_per_position}")
    centres = ((anchors[:, :2] + anchors[:, 2:]) / 2)[::anchors_per_position]
    ax.scatter(centres[:, 0].numpy(), centres[:, 1].numpy(), s=2, c="red")
    per_position = anchors.view(-1, anchors_per_position, 4)
    for box_set in per_position[::every]:
        for box in box_set:
            draw_box(ax, box, "cyan", 0.5, 0.7)
    return fig


# --- proposals ---------------------------------------------------------------------------------


def _draw_scored_boxes(ax, boxes: Tensor, scores: Tensor, max_boxes: int) -> None:
    order = scores.argsort()[-max_boxes:]  # draw the best last, on top
    cmap = colormaps["plasma"]
    lo, hi = float(scores.min()) if len(scores) else 0.0, float(scores.max()) if len(scores) else 1.0
    for i in order.tolist():
        draw_box(ax, boxes[i], cmap((float(scores[i]) - lo) / max(hi - lo, 1e-8)), 0.6, 0.6)


def proposals(image: Tensor, boxes: Tensor, scores: Tensor, max_boxes: int = 1000, title: str = "") -> Figure:
    """Up to ``max_boxes`` boxes ``Tensor[R, 4]`` coloured by score ``Tensor[R]`` (plasma: bright = high)."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    show_image(ax, image, title or f"{min(len(boxes), max_boxes)} of {len(boxes)} proposals, coloured by objectness")
    _draw_scored_boxes(ax, boxes, scores, max_boxes)
    return fig


def proposals_before_after_nms(image: Tensor, before: tuple[Tensor, Tensor], after: tuple[Tensor, Tensor], max_boxes: int = 1000) -> Figure:
    """Two panels: the (boxes, scores) that enter NMS, and those that survive it."""
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    for ax, (boxes, scores), name in zip(fig.subplots(1, 2), (before, after), ("before NMS", "after NMS")):
        show_image(ax, image, f"{name}: {len(boxes)} boxes (best {min(len(boxes), max_boxes)} drawn)")
        _draw_scored_boxes(ax, boxes, scores, max_boxes)
    return fig


# --- box head ----------------------------------------------------------------------------------


def class_probabilities(probs: Tensor, class_names: Sequence[str] = CLASSES, title: str = "") -> Figure:
    """Bar chart of one proposal's softmax ``Tensor[C]``, the winner highlighted."""
    fig = Figure(figsize=(6, 2.6), layout="constrained")
    ax = fig.subplots()
    winner = int(probs.argmax())
    colors = ["tab:orange" if i == winner else "tab:blue" for i in range(len(probs))]
    ax.bar(range(len(probs)), probs.numpy(), color=colors)
    ax.set_xticks(range(len(probs)), [n.strip("_") for n in class_names], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title(title or f"class probabilities (argmax: {class_names[winner]})", fontsize=9)
    return fig


def class_heatmap(probs: Tensor, class_names: Sequence[str] = CLASSES, max_rows: int = 200) -> Figure:
    """Proposals x classes heat map of ``Tensor[R, C]`` probabilities, proposals sorted by best foreground score."""
    order = probs[:, 1:].max(1).values.argsort(descending=True)[:max_rows]
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(probs[order].numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(len(class_names)), [n.strip("_") for n in class_names], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(f"proposal (top {len(order)} of {len(probs)} by foreground score)")
    fig.colorbar(image, ax=ax, label="probability")
    return fig


# --- masks -------------------------------------------------------------------------------------


def class_masks(mask_logits: Tensor, predicted: int, class_names: Sequence[str] = CLASSES, columns: int = 5) -> Figure:
    """All class-specific ``Tensor[C, 28, 28]`` mask probabilities of one RoI; the predicted class framed in red."""
    num = len(mask_logits)
    rows = -(-num // columns)
    fig = Figure(figsize=(1.8 * columns, 1.9 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for c, ax in enumerate(axes):
        if c >= num:
            ax.set_axis_off()
            continue
        ax.imshow(mask_logits[c].sigmoid().numpy(), cmap="gray", vmin=0, vmax=1)
        show_image(ax, None, class_names[c].strip("_") + (" (predicted)" if c == predicted else ""))
        if c == predicted:
            for spine in ax.spines.values():
                spine.set_edgecolor("red")
                spine.set_linewidth(3)
    return fig


# --- RoI Pool vs RoI Align ---------------------------------------------------------------------


def roi_pool_vs_align(box: Tensor, feature_size: tuple[int, int], output_size: int = 2, spatial_scale: float = 1 / 16, sampling_ratio: int = 2) -> Figure:
    """Left: the whole cells RoI Pool maxes over per bin. Right: RoI Align's exact bins and sample points."""
    height, width = feature_size
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax_pool, ax_align = fig.subplots(1, 2)
    x1, y1, x2, y2 = (box * spatial_scale).tolist()
    colors = colormaps["tab10"].colors
    for ax, name in ((ax_pool, "RoI Pool: box snapped to cells"), (ax_align, "RoI Align: exact box, bilinear samples")):
        ax.set_xticks(np.arange(-0.5, width, 1.0), minor=False, labels=[])
        ax.set_yticks(np.arange(-0.5, height, 1.0), minor=False, labels=[])
        ax.grid(True, color="lightgray", linewidth=0.6)
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=9)
        # cell (i, j) holds the value at (x, y) = (j, i); a cell is drawn as the unit square around it
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="black", linestyle="--", linewidth=1.5))
    for k, (r0, r1, c0, c1) in enumerate(cell for row in pool_bins(box, output_size, spatial_scale, feature_size) for cell in row):
        ax_pool.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, color=colors[k % 10], alpha=0.35))
    ys, xs = align_sampling_grid(box, output_size, spatial_scale, sampling_ratio, aligned=False)
    bin_h, bin_w = (y2 - y1) / output_size, (x2 - x1) / output_size
    for ph in range(output_size):
        for pw in range(output_size):
            color = colors[(ph * output_size + pw) % 10]
            ax_align.add_patch(Rectangle((x1 + pw * bin_w, y1 + ph * bin_h), bin_w, bin_h, color=color, alpha=0.25))
            gy, gx = torch.meshgrid(ys[ph], xs[pw], indexing="ij")
            ax_align.scatter(gx.flatten().numpy(), gy.flatten().numpy(), color=color, s=18, edgecolors="black", zorder=3)
    return fig


# --- the model's working size ------------------------------------------------------------------


def image_in_trace_coordinates(image: Tensor, trace) -> Tensor:
    """The input image resized to the model's working size ``trace.image_size`` (where proposals live)."""
    return torch.nn.functional.interpolate(image[None], size=trace.image_size, mode="bilinear", align_corners=False)[0]
