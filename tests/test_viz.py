"""course_lib.viz.stages: each figure builds on small inputs with the expected axes and artists."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.figure import Figure

from course_lib.classes import NUM_CLASSES
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


def test_explorers_return_widgets(small_trace, image):
    import ipywidgets

    t = small_trace[1]
    boxes, scores = t.proposals[:20], t.proposal_scores[:20]
    for widget in (widgets.proposal_explorer(image, t), widgets.nms_explorer(image, boxes, scores), widgets.mask_class_picker(t, 0)):
        assert isinstance(widget, ipywidgets.Widget)


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
