"""Figures of Week 1: what each stage of Mask R-CNN holds, drawn with matplotlib.

Every plotting function returns a ``matplotlib.figure.Figure`` built without pyplot, so a notebook
shows it exactly once (as the cell's value) and a test can count its axes and artists. The
``*_explorer`` functions return ipywidgets for interactive use. Images are ``Tensor[3, H, W]``
in [0, 1]; boxes are ``(x1, y1, x2, y2)`` in the image's pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from course_lib.classes import CLASS_COLORS, CLASSES
from course_lib.roi import align_sampling_grid, pool_bins


def _show(ax, image: Tensor | None, title: str = "") -> None:
    if image is not None:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _box(ax, box: Sequence[float], color, linewidth: float = 1.0, alpha: float = 1.0) -> Rectangle:
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
            _show(ax, None, f"level {name} ch {c}  {fmap.shape[-2]}x{fmap.shape[-1]}")
    return fig


def stride_grid(image: Tensor, stride: int, position: tuple[int, int], receptive_field: Tensor | None = None) -> Figure:
    """The image with the stride grid, one highlighted cell ``position = (p_x, p_y)``, and optionally a
    receptive-field map ``Tensor[H, W]`` (e.g. gradient magnitudes) overlaid."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    _show(ax, image, f"stride {stride}: cell ({position[0]}, {position[1]}) and its anchor centre")
    height, width = image.shape[-2:]
    if receptive_field is not None:
        ax.imshow(receptive_field.numpy(), cmap="magma", alpha=0.55, extent=(-0.5, width - 0.5, height - 0.5, -0.5))
    for x in range(0, width, stride):
        ax.axvline(x, color="white", linewidth=0.3, alpha=0.6)
    for y in range(0, height, stride):
        ax.axhline(y, color="white", linewidth=0.3, alpha=0.6)
    px, py = position
    _box(ax, (px * stride, py * stride, (px + 1) * stride, (py + 1) * stride), "yellow", 2.0)
    ax.plot([px * stride], [py * stride], "r+", markersize=12)  # anchors are centred on the cell's corner
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    return fig


# --- anchors -----------------------------------------------------------------------------------


def anchors_at_position(anchors: Tensor, image: Tensor | None = None, image_size: tuple[int, int] | None = None, title: str = "") -> Figure:
    """The ``Tensor[A, 4]`` anchors of one position, coloured by index (same centre, different shapes)."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    _show(ax, image, title or f"{len(anchors)} anchors at one position")
    colors = colormaps["tab10"](np.arange(len(anchors)) % 10)
    for box, color in zip(anchors, colors):
        width, height = (box[2:] - box[:2]).tolist()
        _box(ax, box, color, 1.5).set_label(f"{width:.0f} x {height:.0f}")
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
    _show(ax, image, f"{len(anchors)} anchors = {len(anchors) // anchors_per_position} positions x {anchors_per_position}")
    centres = ((anchors[:, :2] + anchors[:, 2:]) / 2)[::anchors_per_position]
    ax.scatter(centres[:, 0].numpy(), centres[:, 1].numpy(), s=2, c="red")
    per_position = anchors.view(-1, anchors_per_position, 4)
    for box_set in per_position[::every]:
        for box in box_set:
            _box(ax, box, "cyan", 0.5, 0.7)
    return fig


# --- proposals ---------------------------------------------------------------------------------


def _draw_scored_boxes(ax, boxes: Tensor, scores: Tensor, max_boxes: int) -> None:
    order = scores.argsort()[-max_boxes:]  # draw the best last, on top
    cmap = colormaps["plasma"]
    lo, hi = float(scores.min()) if len(scores) else 0.0, float(scores.max()) if len(scores) else 1.0
    for i in order.tolist():
        _box(ax, boxes[i], cmap((float(scores[i]) - lo) / max(hi - lo, 1e-8)), 0.6, 0.6)


def proposals(image: Tensor, boxes: Tensor, scores: Tensor, max_boxes: int = 1000, title: str = "") -> Figure:
    """Up to ``max_boxes`` boxes ``Tensor[R, 4]`` coloured by score ``Tensor[R]`` (plasma: bright = high)."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    _show(ax, image, title or f"{min(len(boxes), max_boxes)} of {len(boxes)} proposals, coloured by objectness")
    _draw_scored_boxes(ax, boxes, scores, max_boxes)
    return fig


def proposals_before_after_nms(image: Tensor, before: tuple[Tensor, Tensor], after: tuple[Tensor, Tensor], max_boxes: int = 1000) -> Figure:
    """Two panels: the (boxes, scores) that enter NMS, and those that survive it."""
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    for ax, (boxes, scores), name in zip(fig.subplots(1, 2), (before, after), ("before NMS", "after NMS")):
        _show(ax, image, f"{name}: {len(boxes)} boxes (best {min(len(boxes), max_boxes)} drawn)")
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
        _show(ax, None, class_names[c].strip("_") + (" (predicted)" if c == predicted else ""))
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


# --- final output ------------------------------------------------------------------------------


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
    ``labels`` at its top-left corner. ``colors``: one per instance, one for all, or ``None`` for
    torchvision's palette. Later instances are painted over earlier ones. Drawn by
    ``torchvision.utils.draw_segmentation_masks`` and ``draw_bounding_boxes``.
    """
    canvas = (image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).to(torch.uint8)).cpu()
    if masks is not None and len(masks):
        masks = masks[:, 0] if masks.dim() == 4 else masks
        masks = masks if masks.dtype == torch.bool else masks > 0.5
        canvas = draw_segmentation_masks(canvas, masks.cpu(), alpha=alpha, colors=colors)
    if boxes is not None and len(boxes):
        canvas = draw_bounding_boxes(canvas, boxes.cpu().float(), labels=labels, colors=colors, width=width)
    return canvas


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
    keep = (detections["scores"] >= score_threshold).nonzero().flatten()
    keep = keep[detections["scores"][keep].argsort()]  # ascending: the most confident is drawn last
    boxes, labels, scores = detections["boxes"][keep], detections["labels"][keep], detections["scores"][keep]
    colors = instance_colors(labels, class_names)
    canvas = draw_masks_and_boxes(image, detections["masks"][keep, 0] >= mask_threshold, boxes, colors, alpha=0.6, width=2)
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    _show(ax, canvas.float() / 255, title or f"{len(keep)} detections with score >= {score_threshold}")
    for box, label, score, color in zip(boxes.tolist(), labels.tolist(), scores.tolist(), colors):
        ax.text(box[0], box[1], f"{class_names[label]} {score:.2f}", fontsize=7, color="white", va="bottom",
                bbox=dict(facecolor=np.array(color) / 255, edgecolor="none", pad=1, alpha=0.85))
    return fig


# --- interactive explorers ---------------------------------------------------------------------


def proposal_explorer(image: Tensor, trace, class_names: Sequence[str] = CLASSES):
    """A slider over the proposals (sorted by best foreground probability): the box and its class probabilities."""
    import ipywidgets as widgets
    from IPython.display import display

    order = trace.class_probs[:, 1:].max(1).values.argsort(descending=True)

    def show(rank: int) -> None:
        i = int(order[rank])
        label = int(trace.class_probs[i].argmax())
        fig = Figure(figsize=(11, 3.2), layout="constrained")
        ax_image, ax_bar = fig.subplots(1, 2, width_ratios=(1.6, 1))
        _show(ax_image, image_in_trace_coordinates(image, trace), f"proposal {i} (rank {rank}), objectness {float(trace.proposal_scores[i]):.2f}")
        _box(ax_image, trace.proposals[i], "yellow", 2.0)
        _box(ax_image, trace.class_boxes[i, label], "red", 1.0)
        ax_bar.bar(range(len(class_names)), trace.class_probs[i].numpy())
        ax_bar.set_xticks(range(len(class_names)), [n.strip("_") for n in class_names], rotation=45, ha="right", fontsize=8)
        ax_bar.set_ylim(0, 1)
        display(fig)

    return widgets.interactive(show, rank=widgets.IntSlider(0, 0, len(order) - 1, description="rank"))


def nms_explorer(image: Tensor, boxes: Tensor, scores: Tensor, nms_fn=None, max_boxes: int = 1000):
    """A threshold slider: the boxes that NMS keeps at each IoU threshold (``nms_fn`` defaults to torchvision's)."""
    import ipywidgets as widgets
    from IPython.display import display
    from torchvision.ops import nms

    nms_fn = nms_fn or nms

    def show(iou_threshold: float) -> None:
        keep = torch.as_tensor(nms_fn(boxes, scores, iou_threshold), dtype=torch.int64)
        display(proposals(image, boxes[keep], scores[keep], max_boxes, f"IoU threshold {iou_threshold:.2f}: {len(keep)} of {len(boxes)} kept"))

    return widgets.interactive(show, iou_threshold=widgets.FloatSlider(value=0.7, min=0.05, max=1.0, step=0.05))


def mask_class_picker(trace, detection: int, class_names: Sequence[str] = CLASSES):
    """A class drop-down: detection ``detection``'s 28 x 28 mask as predicted for the chosen class."""
    import ipywidgets as widgets
    from IPython.display import display

    def show(class_index: int) -> None:
        fig = Figure(figsize=(3, 3), layout="constrained")
        ax = fig.subplots()
        ax.imshow(trace.mask_logits[detection, class_index].sigmoid().numpy(), cmap="gray", vmin=0, vmax=1)
        predicted = class_names[int(trace.labels[detection])]
        _show(ax, None, f"mask for '{class_names[class_index]}' (predicted: {predicted})")
        display(fig)

    options = [(name, i) for i, name in enumerate(class_names)]
    return widgets.interactive(show, class_index=widgets.Dropdown(options=options, value=int(trace.labels[detection])))


def image_in_trace_coordinates(image: Tensor, trace) -> Tensor:
    """The input image resized to the model's working size ``trace.image_size`` (where proposals live)."""
    return torch.nn.functional.interpolate(image[None], size=trace.image_size, mode="bilinear", align_corners=False)[0]
