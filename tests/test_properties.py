"""Property tests (hypothesis): the course's from-scratch Week 1 ops and the exercises' solutions equal the field's code.

Inputs are drawn on half-pixel grids so exact ties (IoU equal to a threshold, boxes sharing an
edge, duplicates) come up often, not once in a billion. Every test runs derandomized (a fixed
sequence of examples, so it cannot flake) with no example database, and its example count keeps
the whole file near half a minute on two cores.
"""

from __future__ import annotations

import itertools
import math

import torch
import torchvision
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops.poolers import LevelMapper

from course_lib.exercises import REGISTRY, same
from course_lib.scratch import anchors, boxes, roi


def examples(n: int) -> settings:
    return settings(max_examples=n, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])


HALF_PIXELS = st.integers(0, 80).map(lambda v: v / 2)
SIDES = st.integers(0, 60).map(lambda v: v / 2)
THRESHOLDS = st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]) | st.floats(0, 1)


@st.composite
def box_tensors(draw, min_size=0, max_size=12, min_side=SIDES):
    """``Tensor[N, 4]`` float64 boxes on a half-pixel grid (zero-size and duplicate boxes included)."""
    rows = draw(st.lists(st.tuples(HALF_PIXELS, HALF_PIXELS, min_side, min_side), min_size=min_size, max_size=max_size))
    return torch.tensor([[x, y, x + w, y + h] for x, y, w, h in rows], dtype=torch.float64).reshape(-1, 4)


@st.composite
def scored_boxes(draw, max_size=12):
    """Boxes with positive area and distinct scores (greedy NMS's order is then unambiguous)."""
    b = draw(box_tensors(max_size=max_size, min_side=st.integers(1, 60).map(lambda v: v / 2)))
    ranks = draw(st.permutations(range(len(b))))
    return b, torch.tensor(ranks, dtype=torch.float64) / max(len(b), 1)


# --- course_lib.scratch against torchvision ---------------------------------------------------------


@examples(200)
@given(box_tensors(min_side=st.integers(1, 60).map(lambda v: v / 2)), box_tensors(min_side=st.integers(1, 60).map(lambda v: v / 2)))
def test_scratch_box_iou_is_torchvisions(a, b):
    assert torch.allclose(boxes.box_iou(a, b), torchvision.ops.box_iou(a, b), atol=1e-12)


@examples(200)
@given(scored_boxes(), THRESHOLDS)
def test_scratch_nms_is_torchvisions(scored, threshold):
    b, s = scored
    assert boxes.nms(b, s, threshold).tolist() == torchvision.ops.nms(b, s, threshold).tolist()


@examples(120)
@given(box_tensors(min_size=1, min_side=st.integers(1, 60).map(lambda v: v / 2)), st.data(),
       st.sampled_from([boxes.RPN_WEIGHTS, boxes.BOX_HEAD_WEIGHTS]))
def test_scratch_box_coding_is_boxcoders(references, data, weights):
    n = len(references)
    proposals = data.draw(box_tensors(min_size=n, max_size=n, min_side=st.integers(1, 60).map(lambda v: v / 2)))
    coder = BoxCoder(weights)
    deltas = boxes.encode(references, proposals, weights)
    assert torch.allclose(deltas, coder.encode_single(references, proposals), atol=1e-9)
    assert torch.allclose(boxes.decode(deltas, proposals, weights), coder.decode_single(deltas, proposals), atol=1e-6)
    assert torch.allclose(boxes.decode(deltas, proposals, weights), references, atol=1e-6)  # decoding inverts encoding


@examples(120)
@given(st.lists(st.sampled_from([8, 16, 32, 45, 64, 128, 256, 512]), min_size=1, max_size=3, unique=True),
       st.lists(st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0, 1 / 3]), min_size=1, max_size=3, unique=True),
       st.tuples(st.integers(1, 9), st.integers(1, 9)), st.sampled_from([4, 8, 16, 32]))
def test_scratch_anchors_are_anchorgenerators(sizes, ratios, grid, stride):
    generator = AnchorGenerator(sizes=(tuple(sizes),), aspect_ratios=(tuple(ratios),))
    expected = generator.grid_anchors([torch.tensor(grid)], [[torch.tensor(stride), torch.tensor(stride)]])[0]
    ours = anchors.grid_anchors(anchors.cell_anchors(sizes, ratios), grid, stride)
    assert torch.equal(ours, expected)


@st.composite
def feature_rois(draw):
    """A random [1, C, H, W] float64 feature map and RoIs in image pixels at a pyramid scale."""
    height, width, channels = draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**16))
    scale = draw(st.sampled_from([1.0, 0.5, 0.25]))
    features = torch.randn(1, channels, height, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    coords = st.integers(-4, 2 * int(width / scale) + 4).map(lambda v: v / 2)
    rows = draw(st.lists(st.tuples(coords, coords, SIDES, SIDES), min_size=1, max_size=4))
    rois = torch.tensor([[0, x, y, x + w, y + h] for x, y, w, h in rows], dtype=torch.float64)
    return features, rois, scale


@examples(60)
@given(feature_rois(), st.tuples(st.integers(1, 3), st.integers(1, 3)), st.sampled_from([-1, 1, 2, 3]), st.booleans())
def test_scratch_roi_align_is_torchvisions(data, output_size, sampling_ratio, aligned):
    features, rois, scale = data
    expected = torchvision.ops.roi_align(features, rois, output_size, scale, sampling_ratio, aligned)
    # 1e-6, not float64's 1e-12: torchvision's CPU kernel differs from exact float64 arithmetic by ~1e-7
    assert torch.allclose(roi.roi_align(features, rois, output_size, scale, sampling_ratio, aligned), expected, atol=1e-6)


@examples(80)
@given(feature_rois(), st.tuples(st.integers(1, 4), st.integers(1, 4)))
def test_scratch_roi_pool_is_torchvisions(data, output_size):
    features, rois, scale = data
    features = features.float()  # the kernel rounds the box in float32; the scratch version says so
    expected = torchvision.ops.roi_pool(features, rois.float(), output_size, scale)
    assert torch.equal(roi.roi_pool(features, rois.float(), output_size, scale), expected)


@examples(500)
@given(st.floats(0.5, 3000), st.floats(0.5, 3000))
def test_fpn_level_is_levelmappers(width, height):
    box = [0.0, 0.0, width, height]
    assert REGISTRY["fpn_level"].solution(box) == int(LevelMapper(2, 5)([torch.tensor([box], dtype=torch.float64)])[0]) + 2


# --- each published solution against its checker's truth, beyond the fixed cases -------------------


def agrees(name: str, *args) -> bool:
    exercise = REGISTRY[name]
    return same(exercise.solution(*args), exercise.expected(*args), exercise.atol)


@examples(200)
@given(box_tensors(min_size=2, max_size=2, min_side=st.integers(1, 60).map(lambda v: v / 2)))
def test_iou_solution(pair):
    assert agrees("iou", pair[0].tolist(), pair[1].tolist())


@examples(150)
@given(scored_boxes(), THRESHOLDS)
def test_nms_solution(scored, threshold):
    assert agrees("nms", *scored, threshold)


@examples(200)
@given(st.integers(1, 7), st.integers(1, 7), st.data())
def test_bilinear_solution(height, width, data):
    feature_map = torch.randn(height, width, generator=torch.Generator().manual_seed(data.draw(st.integers(0, 999))), dtype=torch.float64)
    y = data.draw(st.integers(0, 4 * (height - 1)).map(lambda v: v / 4))
    x = data.draw(st.integers(0, 4 * (width - 1)).map(lambda v: v / 4))
    assert agrees("bilinear", feature_map, y, x)


IOU_ENTRIES = st.sampled_from([0.0, 0.3, 0.7, 0.5, 1.0]) | st.integers(0, 100).map(lambda v: v / 100)


@st.composite
def iou_matrices(draw, min_rows=0, max_rows=5):
    rows, cols = draw(st.integers(min_rows, max_rows)), draw(st.integers(min_rows, max_rows))
    values = draw(st.lists(IOU_ENTRIES, min_size=rows * cols, max_size=rows * cols))
    return torch.tensor(values, dtype=torch.float64).reshape(rows, cols)


@examples(250)
@given(iou_matrices(min_rows=1))
def test_anchor_labels_solution(iou):
    assert agrees("anchor_labels", iou)


def _best_gated_pairs(iou: torch.Tensor, gate: float) -> tuple[int, float]:
    """Brute force: the most allowed pairs any one-to-one assignment can make, then the largest total IoU among those."""
    rows, cols = iou.shape
    best = (0, 0.0)
    small, large = (rows, cols) if rows <= cols else (cols, rows)
    for chosen in itertools.permutations(range(large), small):
        pairs = [(i, c) if rows <= cols else (c, i) for i, c in enumerate(chosen)]
        allowed = [float(iou[r, c]) for r, c in pairs if iou[r, c] >= gate]
        best = max(best, (len(allowed), round(sum(allowed), 9)))
    return best


@examples(300)
@given(iou_matrices(max_rows=4), st.sampled_from([0.0, 0.3, 0.5, 0.7]))
def test_gated_matches_solution_is_the_tracker_and_the_stated_rule(iou, gate):
    """The solution equals the tracker's assignment and makes the most allowed pairs, then the largest total IoU."""
    pairs = REGISTRY["gated_matches"].solution(iou, gate)
    assert pairs == REGISTRY["gated_matches"].expected(iou, gate)
    assert all(iou[r, c] >= gate for r, c in pairs)
    assert (len(pairs), round(sum(float(iou[r, c]) for r, c in pairs), 9)) == _best_gated_pairs(iou, gate)


@examples(200)
@given(st.lists(st.booleans(), max_size=12), st.integers(1, 4), st.integers(0, 4))
def test_track_states_solution_is_the_tracker(matched, min_hits, max_age):
    assert agrees("track_states", matched, min_hits, max_age)


@examples(300)
@given(st.integers(1, 400), st.integers(1, 11), st.integers(1, 5), st.integers(0, 5))
def test_conv_output_size_solution(size, kernel, stride, padding):
    if size + 2 * padding >= kernel and padding <= kernel // 2:
        assert agrees("conv_output_size", size, kernel, stride, padding)


@examples(80)
@given(st.integers(1, 2500), st.integers(1, 2500), st.integers(16, 1024), st.integers(16, 2048))
def test_resized_size_solution(height, width, min_size, max_size):
    scale = min(min_size / min(height, width), max_size / max(height, width))
    assume(min(height, width) * scale >= 1)  # torchvision cannot resize a side to zero pixels
    assert agrees("resized_size", height, width, min_size, max_size)


@examples(300)
@given(st.integers(0, 120), st.sampled_from([24, 25, 30, 50, 60, 12.5, 29.97]), st.sampled_from([1, 5, 7.5, 10, 12, 15, 24, 25, 30]))
def test_kept_frames_solution(num_frames, source_fps, target_fps):
    assert agrees("kept_frames", num_frames, source_fps, target_fps)


@examples(200)
@given(st.lists(st.integers(1, 400).map(float), min_size=1, max_size=40), st.integers(0, 3))
def test_latency_summary_solution(times, warmup):
    if warmup < len(times):
        assert agrees("latency_summary", times, warmup)


@examples(200)
@given(st.integers(1, 40), st.integers(41, 400), st.data())
def test_lr_multiplier_solution(warmup, steps, data):
    step = data.draw(st.integers(0, steps))
    assert math.isclose(REGISTRY["lr_multiplier"].solution(step, warmup, steps), REGISTRY["lr_multiplier"].expected(step, warmup, steps), abs_tol=1e-9)


@examples(300)
@given(st.integers(0, 450).map(lambda v: v / 2), st.integers(0, 196).map(lambda v: v / 2), SIDES, SIDES, st.integers(1, 16))
def test_responsible_cell_solution(x, y, w, h, grid):
    """Boxes inside a 128 x 256 image (sides up to 30 px), centres often on the half-pixel cell borders."""
    assert agrees("responsible_cell", (x, y, x + w, y + h), (128, 256), grid)
