"""Week 1's explorable figures: every view drawn in advance, one control switches between them.

Each explorer draws its figure at every position of its control (an NMS threshold, a proposal's
rank, a class) and returns an :class:`Explorable`. Its HTML holds those views as WebP images and a
slider or drop-down whose inline ``oninput`` handler shows one of them. Nothing runs in a kernel
when the control moves, so the same output works in Jupyter, in Colab and on the static site
(ipywidgets redraw in the kernel: on the site they showed nothing).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchvision.ops import nms

from course_lib.classes import CLASSES
from course_lib.errors import UserError
from course_lib.viz.stages import draw_box, image_in_trace_coordinates, proposals, show_image

# Lossy WebP: a 700 x 400 figure of boxes is ~26 kB at quality 80 against ~260 kB as PNG, which
# keeps a page that carries dozens of views light; text and box edges stay sharp at this quality.
WEBP_QUALITY = 80
DPI = 100
#: The NMS slider's positions: IoU thresholds 0.05, 0.10, ..., 1.00.
NMS_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 21))
#: How many proposals (the most confident first) the proposal slider carries: ~12 kB each.
PROPOSAL_VIEWS = 60

# Runs in the reader's browser when the control moves: show the view whose index is the
# control's value, hide the others, and write the view's label next to a slider.
_SHOW_VIEW = (
    "const views = this.closest('.course-explorable').querySelectorAll('.course-explorable-view');"
    "views.forEach((view, i) => { view.hidden = i !== Number(this.value); });"
    "const shown = this.parentElement.querySelector('output');"
    "if (shown) shown.value = views[this.value].dataset.label;"
)


@dataclass(frozen=True)
class View:
    """One position of a control: the text the control shows for it and the figure, as WebP bytes."""

    label: str
    webp: bytes = field(repr=False)


def figure_view(label: str, fig: Figure) -> View:
    """``fig`` rendered to a WebP image (matplotlib writes it through Pillow)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="webp", dpi=DPI, pil_kwargs={"quality": WEBP_QUALITY})
    return View(label, buffer.getvalue())


@dataclass(frozen=True)
class Explorable:
    """Views switched by one control: a slider over ordered positions, or a drop-down of named choices.

    Displayed in a notebook (its ``_repr_html_``) or on the site, view ``initial`` shows first.
    """

    description: str
    views: tuple[View, ...] = field(repr=False)
    initial: int = 0
    control: Literal["slider", "dropdown"] = "slider"

    def __post_init__(self) -> None:
        if not self.views:
            raise UserError(f"'{self.description}' has no views to show: give it at least one")
        if not 0 <= self.initial < len(self.views):
            raise UserError(f"'{self.description}': initial view {self.initial} is not one of its {len(self.views)} views")
        if self.control not in ("slider", "dropdown"):
            raise UserError(f"'{self.description}': control must be 'slider' or 'dropdown', not {self.control!r}")

    def _control_html(self) -> str:
        handler = html.escape(_SHOW_VIEW)
        if self.control == "slider":
            return (f'<input type="range" min="0" max="{len(self.views) - 1}" step="1" value="{self.initial}" '
                    f'oninput="{handler}"> <output>{html.escape(self.views[self.initial].label)}</output>')
        options = "".join(f'<option value="{i}"{" selected" if i == self.initial else ""}>{html.escape(view.label)}</option>'
                          for i, view in enumerate(self.views))
        return f'<select oninput="{handler}">{options}</select>'

    def _repr_html_(self) -> str:
        images = "".join(
            f'<img class="course-explorable-view" data-label="{html.escape(view.label)}" '
            f'alt="{html.escape(self.description)}: {html.escape(view.label)}"{"" if i == self.initial else " hidden"} '
            f'src="data:image/webp;base64,{base64.b64encode(view.webp).decode("ascii")}">'
            for i, view in enumerate(self.views))
        return (f'<div class="course-explorable"><label>{html.escape(self.description)} {self._control_html()}</label>'
                f"<div>{images}</div></div>")


def nms_explorer(image: Tensor, boxes: Tensor, scores: Tensor, nms_fn=None, max_boxes: int = 1000) -> Explorable:
    """A threshold slider over :data:`NMS_THRESHOLDS`: the boxes ``Tensor[R, 4]`` that NMS keeps at each
    IoU threshold (``nms_fn(boxes, scores, threshold)`` defaults to torchvision's); starts at 0.7."""
    nms_fn = nms_fn or nms
    views = []
    for threshold in NMS_THRESHOLDS:
        keep = torch.as_tensor(nms_fn(boxes, scores, threshold), dtype=torch.int64)
        title = f"IoU threshold {threshold:.2f}: {len(keep)} of {len(boxes)} kept"
        views.append(figure_view(f"{threshold:.2f}", proposals(image, boxes[keep], scores[keep], max_boxes, title)))
    return Explorable("IoU threshold", tuple(views), initial=NMS_THRESHOLDS.index(0.7))


def proposal_explorer(image: Tensor, trace, class_names: Sequence[str] = CLASSES, max_views: int = PROPOSAL_VIEWS) -> Explorable:
    """A rank slider over the ``max_views`` proposals with the best foreground probability: the
    proposal (yellow), its refined box for the winning class (red) and its class probabilities."""
    order = trace.class_probs[:, 1:].max(1).values.argsort(descending=True)[:max_views]
    resized = image_in_trace_coordinates(image, trace)
    views = []
    for rank, i in enumerate(order.tolist()):
        label = int(trace.class_probs[i].argmax())
        fig = Figure(figsize=(7.5, 2.8), layout="constrained")  # about the text column's width: no shrinking
        ax_image, ax_bar = fig.subplots(1, 2, width_ratios=(1.6, 1))
        show_image(ax_image, resized, f"proposal {i} (rank {rank}), objectness {float(trace.proposal_scores[i]):.2f}")
        draw_box(ax_image, trace.proposals[i], "yellow", 2.0)
        draw_box(ax_image, trace.class_boxes[i, label], "red", 1.0)
        ax_bar.bar(range(len(class_names)), trace.class_probs[i].numpy())
        ax_bar.set_xticks(range(len(class_names)), [n.strip("_") for n in class_names], rotation=45, ha="right", fontsize=8)
        ax_bar.set_ylim(0, 1)
        views.append(figure_view(str(rank), fig))
    return Explorable(f"rank (top {len(views)} of {len(trace.class_probs)} proposals)", tuple(views))


def mask_class_picker(trace, detection: int, class_names: Sequence[str] = CLASSES) -> Explorable:
    """A class drop-down: detection ``detection``'s 28 x 28 mask as predicted for each class; starts at
    the predicted class."""
    count = len(trace.labels)
    if not 0 <= detection < count:
        pick = f"pick one of 0 to {count - 1}" if count else "lower the score threshold or pick another image"
        raise UserError(f"detection {detection} does not exist: this image has {count} detections; {pick}")
    predicted = int(trace.labels[detection])
    views = []
    for class_index, name in enumerate(class_names):
        fig = Figure(figsize=(3, 3), layout="constrained")
        ax = fig.subplots()
        ax.imshow(trace.mask_logits[detection, class_index].sigmoid().numpy(), cmap="gray", vmin=0, vmax=1)
        show_image(ax, None, f"mask for '{name}' (predicted: {class_names[predicted]})")
        views.append(figure_view(name, fig))
    return Explorable("class", tuple(views), initial=predicted, control="dropdown")
