"""course_lib.scratch.boxes against torchvision.ops and BoxCoder."""

import pytest
import torch
import torchvision
from torchvision.models.detection._utils import BoxCoder

from course_lib.scratch import boxes


def _random_boxes(n: int, generator: torch.Generator, extent: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * extent
    wh = torch.rand(n, 2, generator=generator) * extent / 2 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_box_iou_equals_torchvision():
    g = torch.Generator().manual_seed(0)
    a, b = _random_boxes(40, g), _random_boxes(30, g)
    assert torch.allclose(boxes.box_iou(a, b), torchvision.ops.box_iou(a, b), atol=1e-6)
    assert torch.allclose(boxes.box_iou(a, a).diagonal(), torch.ones(40))


@pytest.mark.parametrize("seed", range(20))
def test_nms_keeps_the_same_indices_as_torchvision(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 300, (1,), generator=g))
    b = _random_boxes(n, g)
    scores = torch.rand(n, generator=g)
    threshold = float(torch.rand(1, generator=g)) * 0.9 + 0.05
    assert torch.equal(boxes.nms(b, scores, threshold), torchvision.ops.nms(b, scores, threshold))


@pytest.mark.parametrize("seed", range(5))
def test_nms_ties_resolved_like_torchvision(seed):
    g = torch.Generator().manual_seed(100 + seed)
    b = _random_boxes(200, g, extent=40.0)
    scores = torch.randint(0, 4, (200,), generator=g).float()  # many equal scores
    assert torch.equal(boxes.nms(b, scores, 0.5), torchvision.ops.nms(b, scores, 0.5))
    duplicates = b[:1].repeat(5, 1)
    assert torch.equal(boxes.nms(duplicates, torch.ones(5), 0.5), torchvision.ops.nms(duplicates, torch.ones(5), 0.5))


def test_nms_empty_and_bad_scores():
    assert boxes.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    with pytest.raises(ValueError, match="scores"):
        boxes.nms(torch.zeros(3, 4), torch.zeros(2), 0.5)


@pytest.mark.parametrize("weights", [boxes.RPN_WEIGHTS, boxes.BOX_HEAD_WEIGHTS])
def test_encode_decode_equal_boxcoder(weights):
    g = torch.Generator().manual_seed(1)
    targets, proposals = _random_boxes(50, g), _random_boxes(50, g)
    coder = BoxCoder(weights)
    deltas = boxes.encode(targets, proposals, weights)
    assert torch.equal(deltas, coder.encode_single(targets, proposals))
    assert torch.allclose(boxes.decode(deltas, proposals, weights), targets, atol=1e-3)
    # per-class deltas (box head: 4 numbers per class), including huge dw that must be clamped
    per_class = torch.randn(50, 4 * 9, generator=g) * 3
    per_class[:, 2::4] += 20
    assert torch.equal(boxes.decode(per_class, proposals, weights), coder.decode_single(per_class, proposals))


def test_decode_clamps_growth():
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    grown = boxes.decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), box)
    assert (grown[0, 2] - grown[0, 0]).item() == pytest.approx(10 * 1000 / 16, rel=1e-5)


def test_decode_simple_differs_from_torchvision_only_when_size_changes():
    g = torch.Generator().manual_seed(2)
    anchors_ = _random_boxes(20, g)
    shift_only = torch.cat([torch.randn(20, 2, generator=g), torch.zeros(20, 2)], dim=1)
    assert torch.allclose(boxes.decode_simple(shift_only, anchors_), boxes.decode(shift_only, anchors_), atol=1e-4)
    grow = torch.tensor([[0.0, 0.0, 0.5, 0.5]]).repeat(20, 1)
    assert not torch.allclose(boxes.decode_simple(grow, anchors_), boxes.decode(grow, anchors_), atol=1e-2)


def test_bad_shape_message():
    with pytest.raises(ValueError, match=r"Tensor\[N, 4\]"):
        boxes.box_iou(torch.zeros(3), torch.zeros(2, 4))
