"""course_lib.viz.stages: each figure builds on small inputs with the expected axes and artists;
course_lib.viz.widgets: each explorable carries one view per position of its control."""

import io
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.figure import Figure

from course_lib.classes import CLASSES, NUM_CLASSES
from course_lib.errors import UserError
from course_lib.modeling import maskrcnn as model_lib
from course_lib.modeling.internals import gradient_receptive_field, trace
from course_lib.scratch import anchors
from course_lib.viz import overlay, stages, widgets


@pytest.fixture(scope="module")
def image():
    return torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def small_trace(image):
    torch.manual_seed(0)
    model = model_lib.build("toycity_small", box_score_thresh=0.0, box_detections_per_img=5, min_size=64, max_size=96).eval()
    return model, trace(model, image)


def _rectangles(fig: Figure) -> int:
    return sum(len(ax.patches) for ax in fig.axes)


def test_feature_channels_one_axis_per_level_and_channel(small_trace):
    fig = stages.feature_channels(small_trace[1].features, channels=(0, 5, 7))
    assert len(fig.axes) == 3 * len(small_trace[1].features)


def test_stride_grid_with_receptive_field(small_trace, image):
    model, t = small_trace
    level = list(t.features)[1]
    rf = gradient_receptive_field(model.backbone, t.batch, level, (3, 2))
    assert rf.shape == t.batch.shape[-2:] and rf.sum() > 0
    fig = stages.stride_grid(t.batch[0], t.strides[1][0], (3, 2), rf)
    assert len(fig.axes) == 1 and len(fig.axes[0].images) == 2 and _rectangles(fig) == 1


def test_anchor_figures():
    cell = anchors.cell_anchors((128, 256, 512), (0.5, 1.0, 2.0))
    fig = stages.anchors_at_position(cell + torch.tensor([320.0, 240.0] * 2), image_size=(480, 640))
    assert _rectangles(fig) == 9 + 1  # nine anchors and the image frame
    grid = anchors.grid_anchors(anchors.cell_anchors((32,), (0.5, 1.0, 2.0)), (4, 6), 16)
    fig = stages.anchor_grid(grid, 3, torch.rand(3, 64, 96), every=2)
    assert len(fig.axes[0].collections) == 1 and _rectangles(fig) == 3 * len(range(0, 24, 2))


def test_proposal_figures(image):
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20], [30, 30, 60, 50]])
    scores = torch.tensor([0.2, 0.9, 0.5])
    assert _rectangles(stages.proposals(image, boxes, scores, max_boxes=2)) == 2
    fig = stages.proposals_before_after_nms(image, (boxes, scores), (boxes[1:], scores[1:]))
    assert len(fig.axes) == 2 and [len(ax.patches) for ax in fig.axes] == [3, 2]


def test_box_head_figures(small_trace):
    t = small_trace[1]
    fig = stages.class_probabilities(t.class_probs[0])
    assert len(fig.axes[0].patches) == NUM_CLASSES
    fig = stages.class_heatmap(t.class_probs, max_rows=50)
    assert len(fig.axes) == 2 and fig.axes[0].images[0].get_array().shape == (min(50, len(t.class_probs)), NUM_CLASSES)


def test_class_masks_grid_highlights_prediction(small_trace):
    t = small_trace[1]
    fig = stages.class_masks(t.mask_logits[0], int(t.labels[0]), columns=5)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == NUM_CLASSES
    assert sum("(predicted)" in ax.get_title() for ax in shown) == 1


def test_roi_pool_vs_align_draws_bins_and_samples():
    fig = stages.roi_pool_vs_align(torch.tensor([20.0, 30.0, 120.0, 100.0]), (10, 12), output_size=2, spatial_scale=1 / 16, sampling_ratio=2)
    ax_pool, ax_align = fig.axes
    assert len(ax_pool.patches) == 1 + 4 and len(ax_align.patches) == 1 + 4
    assert sum(len(c.get_offsets()) for c in ax_align.collections) == 4 * 2 * 2


def test_detections_overlay_and_instance_colours(small_trace, image):
    t = small_trace[1]
    fig = overlay.detections_overlay(image, t.final, score_threshold=0.0)
    assert len(fig.axes) == 1 and len(fig.axes[0].images) == 1
    assert len(fig.axes[0].texts) == len(t.final["scores"])  # one label per instance
    colours = overlay.instance_colors(torch.tensor([3, 3, 1]))
    assert colours[0] != colours[1] and len(set(colours)) == 3


def _shown_views(html: str) -> list[tuple[str, bool, bytes]]:
    """(label, shown, image bytes) of each view in an explorable's HTML."""
    import base64
    import re

    views = re.findall(r'<img class="course-explorable-view" data-label="([^"]*)" alt="[^"]*"( hidden)? src="data:image/webp;base64,([^"]+)">', html)
    return [(label, not hidden, base64.b64decode(data)) for label, hidden, data in views]


def test_nms_explorer_draws_one_view_per_threshold_and_shows_0_7_first(small_trace, image):
    from PIL import Image
    from torchvision.ops import nms

    t = small_trace[1]
    calls = []

    def spy_nms(boxes, scores, threshold):
        calls.append(threshold)
        return nms(boxes, scores, threshold)

    explorable = widgets.nms_explorer(image, t.proposals[:50], t.proposal_scores[:50], nms_fn=spy_nms)
    views = _shown_views(explorable._repr_html_())
    assert calls == list(widgets.NMS_THRESHOLDS) and len(views) == len(widgets.NMS_THRESHOLDS)
    assert [label for label, _, _ in views] == [f"{threshold:.2f}" for threshold in widgets.NMS_THRESHOLDS]
    assert [label for label, shown, _ in views if shown] == ["0.70"]
    with Image.open(io.BytesIO(views[0][2])) as first:
        assert first.format == "WEBP" and first.size == (7 * widgets.DPI, 4 * widgets.DPI)  # stages.proposals' 7 x 4 inches
    assert 'type="range" min="0" max="19" step="1" value="13"' in explorable._repr_html_()


def _two_proposals() -> SimpleNamespace:
    """A trace with two proposals: the first is background, the second a confident car."""
    probs = torch.full((2, NUM_CLASSES), 0.01)
    probs[0, 0], probs[1, 3] = 0.92, 0.92
    boxes = torch.tensor([[1.0, 1.0, 20.0, 20.0], [30.0, 10.0, 60.0, 40.0]])
    return SimpleNamespace(class_probs=probs, proposals=boxes, proposal_scores=torch.tensor([0.9, 0.8]),
                           class_boxes=boxes[:, None].expand(2, NUM_CLASSES, 4), image_size=(64, 96))


@pytest.mark.parametrize("max_views", [1, 3])
def test_proposal_explorer_carries_the_most_confident_proposals(image, max_views):
    t = _two_proposals()
    views = _shown_views(widgets.proposal_explorer(image, t, max_views=max_views)._repr_html_())
    expected = min(max_views, len(t.proposals))
    assert [label for label, _, _ in views] == [str(rank) for rank in range(expected)]
    assert [shown for _, shown, _ in views] == [True] + [False] * (expected - 1)


def test_mask_class_picker_has_every_class_and_starts_at_the_predicted_one(small_trace):
    t = small_trace[1]
    for detection in range(len(t.labels)):
        explorable = widgets.mask_class_picker(t, detection)
        html = explorable._repr_html_()
        views = _shown_views(html)
        predicted = int(t.labels[detection])
        assert [label for label, _, _ in views] == list(CLASSES)
        assert [shown for _, shown, _ in views] == [c == predicted for c in range(NUM_CLASSES)]
        assert f'<option value="{predicted}" selected>{CLASSES[predicted]}</option>' in html and html.count(" selected") == 1
        assert len({data for _, _, data in views}) == NUM_CLASSES  # every class's mask differs
    for missing in (-1, len(t.labels)):
        with pytest.raises(UserError, match="does not exist"):
            widgets.mask_class_picker(t, missing)


def test_explorable_escapes_its_text_and_refuses_impossible_views():
    view = widgets.View('"><script>alert(1)</script>', b"RIFF")
    html = widgets.Explorable("a <b>", (view, view), initial=1)._repr_html_()
    assert "<script>" not in html and "<b>" not in html and "&lt;script&gt;" in html
    assert html.count(" hidden ") == 1 and "<output>&quot;&gt;&lt;script&gt;" in html
    for bad in (dict(views=()), dict(views=(view,), initial=1), dict(views=(view,), initial=-1), dict(views=(view,), control="knob")):
        with pytest.raises(UserError):
            widgets.Explorable("x", **bad)


def test_draw_masks_and_boxes_blends_masks_and_outlines_boxes():
    image = torch.zeros(3, 20, 30)
    masks = torch.zeros(2, 20, 30, dtype=torch.bool)
    masks[0, 2:8, 2:8] = True
    masks[1, 10:18, 15:25] = True
    boxes = torch.tensor([[2.0, 2, 8, 8], [15, 10, 25, 18]])
    colors = overlay.class_colors(torch.tensor([1, 3]))
    drawn = overlay.draw_masks_and_boxes(image, masks, boxes, colors, alpha=0.5, width=1)
    assert drawn.dtype == torch.uint8 and drawn.shape == (3, 20, 30)
    inside = drawn[:, 5, 5].tolist()  # half the class colour over black
    assert inside == [round(c / 2) for c in colors[0]] or inside == [c // 2 for c in colors[0]]
    assert drawn[:, 2, 5].tolist() == list(colors[0])  # the box outline in full colour
    assert drawn[:, 0, 0].tolist() == [0, 0, 0]
    soft = overlay.draw_masks_and_boxes(image, masks[:, None].float(), colors="red", alpha=1.0)  # [N, 1, H, W] soft masks
    assert soft[:, 12, 20].tolist() == [255, 0, 0] and soft[:, 0, 0].tolist() == [0, 0, 0]
    assert torch.equal(overlay.draw_masks_and_boxes(image), torch.zeros(3, 20, 30, dtype=torch.uint8))
