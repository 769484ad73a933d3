"""Detectron2's test-time resize and output mapping in ``course_lib.modeling.detectron2_arch``, on generated sizes.

The sizes are checked against exact rational arithmetic (an independent oracle: the output side is
the exact scaled side rounded half up); ``data_scripts/detectron2_equality.py`` checks the same
function against Detectron2's own ``ResizeShortestEdge.get_output_shape`` on 220,800 sizes and the
whole model against Detectron2's ``DefaultPredictor`` on images that need resizing.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from course_lib.errors import BadInput
from course_lib.modeling import detectron2_arch

TEST_SIZES = ((1024, 2048), (800, 1333))  # the entries' (MIN_SIZE_TEST, MAX_SIZE_TEST)


def exact_output_side(side: int, height: int, width: int, short_edge: int, max_size: int) -> Fraction:
    """The unrounded new length of ``side`` (one of ``height``, ``width``), in exact arithmetic."""
    scale = min(Fraction(short_edge, min(height, width)), Fraction(max_size, max(height, width)))
    return side * scale


def generated_sizes(seed: int = 0) -> list[tuple[int, int]]:
    """Up and down, odd, 1-pixel edges, squares, the sizes the issue named, and 3,000 random ones."""
    rng = np.random.default_rng(seed)
    sizes = [(342, 548), (333, 500), (1110, 1282), (576, 768), (1024, 2048), (1, 1), (1, 2), (2, 1), (1, 3),
             (1, 4096), (4096, 1), (3, 5), (799, 1333), (1023, 2047), (1025, 2049), (4000, 4000), (5, 5001)]
    sizes += [tuple(int(v) for v in pair) for pair in rng.integers(1, 4000, (3000, 2))]
    return sizes


@pytest.mark.parametrize(("short_edge", "max_size"), TEST_SIZES)
def test_output_size_is_the_exact_size_rounded_half_up(short_edge, max_size):
    checked = 0
    for height, width in generated_sizes():
        exact = [exact_output_side(s, height, width, short_edge, max_size) for s in (height, width)]
        expected = [int(x + Fraction(1, 2)) for x in exact]  # floor(x + 1/2): half up
        if min(expected) == 0:
            with pytest.raises(BadInput) as error:
                detectron2_arch.output_size(height, width, short_edge, max_size)
            assert "\n" not in str(error.value) and f"{height}x{width}" in str(error.value)
            continue
        got = detectron2_arch.output_size(height, width, short_edge, max_size)
        for side, g, e, x in zip((height, width), got, expected, exact):
            near_tie = abs((x + Fraction(1, 2)) - round(x + Fraction(1, 2))) < Fraction(1, 10**9)
            assert g == e or (near_tie and abs(g - e) == 1), (height, width, side, got, float(x))
        checked += 1
    assert checked > 2900


def test_342x548_is_1024x1641_where_torchvision_makes_1024x1640():
    transform = GeneralizedRCNNTransform(1024, 2048, [0.0] * 3, [1.0] * 3)
    torchvision_size = tuple(transform.eval().resize(torch.zeros(3, 342, 548))[0].shape[-2:])
    assert torchvision_size == (1024, 1640)  # the floor (F.interpolate, recompute_scale_factor=True)
    assert detectron2_arch.output_size(342, 548, 1024, 2048) == (1024, 1641)  # 548 * 1024 / 342 = 1640.7


def test_elongated_limit_is_where_the_short_side_rounds_to_zero():
    assert detectron2_arch.output_size(1, 4096, 1024, 2048) == (1, 2048)  # 0.5 rounds up
    with pytest.raises(BadInput, match="at most 4096:1"):
        detectron2_arch.output_size(1, 4097, 1024, 2048)


def transform(resize: str, short_edge: int = 64, max_size: int = 128) -> detectron2_arch.Detectron2Transform:
    mean, std = [m / 255 for m in reversed(detectron2_arch.PIXEL_MEAN_BGR)], [1 / 255] * 3
    return detectron2_arch.Detectron2Transform(short_edge, max_size, mean, std, resize).eval()


@pytest.mark.parametrize("resize", sorted(detectron2_arch.RESIZE_MODES))
def test_batches_hold_each_image_at_its_detectron2_size_padded_to_32(resize):
    rng = np.random.default_rng(1)
    images = [torch.from_numpy(rng.integers(0, 256, (3, h, w))).float() / 255 for h, w in ((17, 33), (64, 128), (301, 99), (1, 3))]
    batch, targets = transform(resize)(images)
    assert targets is None
    assert batch.image_sizes == [detectron2_arch.output_size(*image.shape[-2:], 64, 128) for image in images]
    assert batch.image_sizes[1] == (64, 128) and batch.image_sizes[0] == (64, 124)  # 33 * 64 / 17 = 124.2
    assert batch.tensors.shape[-2] % 32 == 0 and batch.tensors.shape[-1] % 32 == 0


def test_pil_resize_is_antialiased_when_shrinking_and_exact_without_resize():
    stripes = torch.zeros(3, 96, 192)
    stripes[:, :, ::2] = 1.0  # one-pixel columns, shrunk 3 times: aliasing turns them into one colour or the other
    resized = {mode: transform(mode, 32, 64).resize_image(stripes) for mode in detectron2_arch.RESIZE_MODES}
    assert resized["pil"].shape == resized["interpolate"].shape == (3, 32, 64)
    assert (resized["pil"] - 0.5).abs().max() < 0.07  # PIL's triangle filter spans 6 columns: grey (4/9 or 5/9)
    assert (resized["interpolate"] - 0.5).abs().min() > 0.49  # F.interpolate lands on one column: black or white

    pixels = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (3, 64, 128))).float() / 255
    assert torch.equal(transform("pil").resize_image(pixels), pixels)  # the test size already: untouched


def test_bad_images_and_options_get_one_line():
    with pytest.raises(BadInput, match="uint8"):
        transform("pil")([torch.zeros(3, 64, 64, dtype=torch.uint8)])  # would wrap around in * 255, silently
    with pytest.raises(BadInput, match=r"\(64, 64\)"):
        transform("pil")([torch.zeros(64, 64)])
    with pytest.raises(BadInput, match=r"\(3, 0, 5\)"):
        transform("interpolate")([torch.zeros(3, 0, 5)])  # would divide by its zero short side
    with pytest.raises(BadInput, match="inference"):
        transform("pil")([torch.zeros(3, 64, 64)], [{"boxes": torch.zeros(0, 4)}])
    with pytest.raises(BadInput, match=r"\['interpolate', 'pil'\]"):
        transform("bilinear")


def test_postprocess_is_detector_postprocess():
    """Scale by original / resized per axis, clip to the original image, drop empty boxes with their fields."""
    resized, original = (1024, 1641), (342, 548)
    boxes = torch.tensor([[10.0, 20.0, 300.0, 400.0],  # inside
                          [1600.0, 1000.0, 1641.0, 1024.0],  # on the far edge: scaled back to exactly 548 x 342
                          [-3.0, -2.0, 20.0, 30.0],  # outside (possible after a user's own boxes): clipped at 0
                          [700.0, 50.0, 700.0, 90.0]])  # empty: dropped, and its score, label and mask with it
    prediction = {"boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.7, 0.6]), "labels": torch.tensor([1, 2, 3, 4]),
                  "masks": torch.ones(4, 1, 28, 28)}
    out = transform("pil").postprocess([prediction], [resized], [original])[0]
    sx, sy = 548 / 1641, 342 / 1024
    expected = torch.tensor([[10 * sx, 20 * sy, 300 * sx, 400 * sy], [1600 * sx, 1000 * sy, 548, 342], [0, 0, 20 * sx, 30 * sy]])
    assert torch.allclose(out["boxes"], expected, atol=1e-4)
    assert out["boxes"][1, 2] <= 548 and out["boxes"][1, 3] <= 342
    assert out["scores"].tolist() == pytest.approx([0.9, 0.8, 0.7]) and out["labels"].tolist() == [1, 2, 3]
    assert out["masks"].shape == (3, 1, 342, 548)
