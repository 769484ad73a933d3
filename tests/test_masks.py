"""course_lib.structures.masks and the class gate of structures.matching, against pycocotools and the
formulas they replaced (the three mask IoUs of evaluation, tracking and deployment).

Inputs are generated (hypothesis, derandomized): empty sets, one mask, all-zero masks, odd and
one-pixel sizes, duplicated masks (ties), soft masks exactly at the 0.5 threshold.
"""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course_lib.evaluation.matched_masks import matched_mask_ious
from course_lib.structures.masks import binary_masks, instance_masks, mask_iou
from course_lib.structures.matching import gate_by_class, match_pairs, same_class

EXAMPLES = settings(max_examples=60, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mask_sets(draw, height: int | None = None, width: int | None = None, max_size: int = 5):
    """``(uint8 [N, H, W], H, W)``: random, all-zero, all-one and repeated masks of odd sizes."""
    height = height or draw(st.integers(1, 9))
    width = width or draw(st.integers(1, 9))
    kinds = st.sampled_from(["random", "random", "zeros", "ones", "repeat"])
    masks: list[np.ndarray] = []
    for kind in draw(st.lists(kinds, max_size=max_size)):
        if kind == "repeat" and masks:
            masks.append(masks[draw(st.integers(0, len(masks) - 1))].copy())
        elif kind == "zeros":
            masks.append(np.zeros((height, width), np.uint8))
        elif kind == "ones":
            masks.append(np.ones((height, width), np.uint8))
        else:
            bits = draw(st.lists(st.booleans(), min_size=height * width, max_size=height * width))
            masks.append(np.array(bits, np.uint8).reshape(height, width))
    return np.stack(masks) if masks else np.zeros((0, height, width), np.uint8), height, width


@st.composite
def two_mask_sets(draw):
    a, height, width = draw(mask_sets())
    b, _, _ = draw(mask_sets(height, width))
    return a, b


def pycocotools_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The field's mask IoU, called directly on uint8 [N, H, W] arrays."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    encode = lambda m: mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0)))  # noqa: E731
    return np.asarray(mask_utils.iou(encode(a), encode(b), [0] * len(b))).reshape(len(a), len(b))


def replaced_tracking_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The formula tracking/mask_rois.mask_iou used: intersections as one matrix product."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter = a @ b.T
    return inter / (a.sum(1)[:, None] + b.sum(1)[None, :] - inter).clamp(min=1)


def replaced_deploy_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """The formula deploy/variants.py used inline for one pair of [1, H, W] probability masks."""
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


@EXAMPLES
@given(two_mask_sets())
def test_mask_iou_equals_pycocotools(sets):
    a, b = sets
    ours = mask_iou(torch.from_numpy(a), torch.from_numpy(b))
    assert ours.shape == (len(a), len(b)) and ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), pycocotools_iou(a, b), rtol=0, atol=1e-12)


@EXAMPLES
@given(two_mask_sets())
def test_mask_iou_equals_the_formulas_it_replaced(sets):
    a, b = (torch.from_numpy(m) for m in sets)
    ours = mask_iou(a, b)
    torch.testing.assert_close(ours.float(), replaced_tracking_iou(a, b))
    # deployment compared [1, H, W] float probabilities; the same masks as 0.25 / 0.75 probabilities
    soft_a, soft_b = (m[:, None].float() * 0.5 + 0.25 for m in (a, b))
    for i in range(len(a)):
        for j in range(len(b)):
            assert float(mask_iou(soft_a[i:i + 1], soft_b[j:j + 1])[0, 0]) == pytest.approx(replaced_deploy_iou(soft_a[i], soft_b[j]), abs=1e-12)


def test_mask_iou_of_known_overlaps_and_edge_cases():
    a = torch.zeros(1, 16, 24, dtype=torch.uint8)
    b = torch.zeros(3, 16, 24, dtype=torch.uint8)
    a[0, 0:10, 0:10] = 1
    b[0, 0:10, 5:15] = 1  # half overlapping: 50 / 150
    b[1, 12:16, 20:24] = 1  # disjoint
    torch.testing.assert_close(mask_iou(a, b), torch.tensor([[50 / 150, 0.0, 0.0]], dtype=torch.float64))  # b[2] empty
    empty = torch.zeros(2, 16, 24)
    assert mask_iou(empty, empty).eq(0).all()  # two empty masks: 0, as COCO has it
    assert mask_iou(a[:0], b).shape == (0, 3) and mask_iou(a, b[:0]).shape == (1, 0)
    with pytest.raises(ValueError, match="different image sizes"):
        mask_iou(a, b[:, :, :-1])


def test_soft_masks_are_cut_above_the_threshold_and_both_shapes_agree():
    soft = torch.tensor([[[0.5, 0.51], [0.49, 1.0]]])  # 0.5 itself is outside, as Mask R-CNN pastes
    assert binary_masks(soft).tolist() == [[[False, True], [False, True]]]
    assert binary_masks(soft[:, None]).tolist() == binary_masks(soft).tolist()
    hard = (soft > 0.5).to(torch.uint8)
    assert mask_iou(soft[:, None], hard).item() == 1.0


def test_instance_masks_takes_both_shapes_and_refuses_others():
    masks = torch.rand(3, 1, 5, 7)
    assert instance_masks(masks).shape == (3, 5, 7) and instance_masks(masks[:, 0]).shape == (3, 5, 7)
    assert instance_masks(np.zeros((0, 5, 7))).shape == (0, 5, 7)
    assert instance_masks(masks).data_ptr() == masks.data_ptr()  # a view: no copy of a frame-sized stack
    for shape in [(3, 2, 5, 7), (5, 7), (1, 3, 1, 5, 7)]:
        with pytest.raises(ValueError, match=r"\[N, H, W\] or \[N, 1, H, W\]"):
            instance_masks(torch.zeros(shape))


@EXAMPLES
@given(st.integers(0, 5), st.integers(0, 5), st.data())
def test_gate_by_class_zeroes_exactly_the_pairs_of_different_classes(n, k, data):
    labels_a = torch.tensor(data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)), dtype=torch.int64)
    labels_b = torch.tensor(data.draw(st.lists(st.integers(1, 3), min_size=k, max_size=k)), dtype=torch.int64)
    similarity = torch.rand(n, k, dtype=torch.float64)
    before = similarity.clone()
    gated = gate_by_class(similarity, labels_a, labels_b)
    expected = [[similarity[i, j].item() if labels_a[i] == labels_b[j] else 0.0 for j in range(k)] for i in range(n)]
    assert gated.shape == (n, k) and gated.dtype == torch.float64 and gated.tolist() == expected
    assert torch.equal(similarity, before)  # the caller's matrix is left as it was
    assert same_class(labels_a, labels_b).tolist() == [[bool(x == y) for y in labels_b] for x in labels_a]


@EXAMPLES
@given(two_mask_sets(), st.data())
def test_matched_mask_ious_are_the_matches_of_the_gated_pycocotools_matrix(sets, data):
    pred, gt = sets
    pred_labels = data.draw(st.lists(st.integers(1, 2), min_size=len(pred), max_size=len(pred)))
    gt_labels = data.draw(st.lists(st.integers(1, 2), min_size=len(gt), max_size=len(gt)))
    prediction = {"masks": torch.from_numpy(pred)[:, None].float(), "labels": torch.tensor(pred_labels, dtype=torch.int64),
                  "scores": torch.ones(len(pred))}
    target = {"masks": torch.from_numpy(gt), "labels": torch.tensor(gt_labels, dtype=torch.int64)}
    ious = pycocotools_iou(pred, gt) * (np.array(pred_labels)[:, None] == np.array(gt_labels)[None, :])
    expected = [ious[p, g] for p, g in match_pairs(ious, 0.5)]
    assert matched_mask_ious([prediction], [target]) == pytest.approx(expected, abs=1e-12)
