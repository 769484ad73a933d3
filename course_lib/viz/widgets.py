"""Interactive Week 1 figures (ipywidgets): proposals, NMS and the mask of each class."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchvision.ops import nms

from course_lib.classes import CLASSES
from course_lib.viz.stages import draw_box, image_in_trace_coordinates, proposals, show_image


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
        show_image(ax_image, image_in_trace_coordinates(image, trace), f"proposal {i} (rank {rank}), objectness {float(trace.proposal_scores[i]):.2f}")
        draw_box(ax_image, trace.proposals[i], "yellow", 2.0)
        draw_box(ax_image, trace.class_boxes[i, label], "red", 1.0)
        ax_bar.bar(range(len(class_names)), trace.class_probs[i].numpy())
        ax_bar.set_xticks(range(len(class_names)), [n.strip("_") for n in class_names], rotation=45, ha="right", fontsize=8)
        ax_bar.set_ylim(0, 1)
        display(fig)

    return widgets.interactive(show, rank=widgets.IntSlider(0, 0, len(order) - 1, description="rank"))


def nms_explorer(image: Tensor, boxes: Tensor, scores: Tensor, nms_fn=None, max_boxes: int = 1000):
    """A threshold slider: the boxes that NMS keeps at each IoU threshold (``nms_fn`` defaults to torchvision's)."""
    import ipywidgets as widgets
    from IPython.display import display

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
        show_image(ax, None, f"mask for '{class_names[class_index]}' (predicted: {predicted})")
        display(fig)

    options = [(name, i) for i, name in enumerate(class_names)]
    return widgets.interactive(show, class_index=widgets.Dropdown(options=options, value=int(trace.labels[detection])))
