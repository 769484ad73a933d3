"""course_lib.scratch.anchors against torchvision's AnchorGenerator, and the roadmap's worked examples."""

import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from course_lib.scratch import anchors


def _torchvision_anchors(sizes, ratios, image_shape, grid_sizes):
    generator = AnchorGenerator(sizes, ratios)
    images = ImageList(torch.zeros(1, 3, *image_shape), [tuple(image_shape)])
    features = [torch.zeros(1, 1, h, w) for h, w in grid_sizes]
    return generator(images, features)[0], generator


def test_fpn_anchors_equal_torchvision():
    image_shape = (96, 160)  # padded batch, multiple of 32
    grid_sizes = anchors.fpn_grid_sizes(image_shape)
    expected, generator = _torchvision_anchors(
        anchors.FPN_SIZES, (anchors.FPN_ASPECT_RATIOS,) * 5, image_shape, grid_sizes
    )
    ours = torch.cat(
        [
            anchors.grid_anchors(anchors.cell_anchors(size, anchors.FPN_ASPECT_RATIOS), grid, stride)
            for size, grid, stride in zip(anchors.FPN_SIZES, grid_sizes, anchors.feature_strides(image_shape, grid_sizes))
        ]
    )
    assert torch.equal(ours, expected)
    assert len(ours) == anchors.count_anchors(grid_sizes, generator.num_anchors_per_location())


def test_nine_anchor_single_map_equals_torchvision():
    sizes, ratios = (128, 256, 512), (0.5, 1.0, 2.0)
    expected, generator = _torchvision_anchors((sizes,), (ratios,), (480, 640), [(30, 40)])
    assert generator.num_anchors_per_location() == [9]
    ours = anchors.grid_anchors(anchors.cell_anchors(sizes, ratios), (30, 40), 16)
    assert torch.equal(ours, expected)
    assert len(ours) == anchors.count_anchors([(30, 40)], 9) == 30 * 40 * 9


def test_non_divisible_pool_level_uses_integer_division_stride():
    # default 800/1333 sizing pads 512x1024 to 672x1344: the pool level is 11x21 and its y-stride 61
    image_shape = (672, 1344)
    grid_sizes = anchors.fpn_grid_sizes(image_shape)
    assert grid_sizes[-1] == (11, 21)
    assert anchors.feature_strides(image_shape, grid_sizes)[-1] == (672 // 11, 1344 // 21)
    expected, _ = _torchvision_anchors(anchors.FPN_SIZES, (anchors.FPN_ASPECT_RATIOS,) * 5, image_shape, grid_sizes)
    strides = anchors.feature_strides(image_shape, grid_sizes)
    ours = torch.cat(
        [anchors.grid_anchors(anchors.cell_anchors(s, anchors.FPN_ASPECT_RATIOS), g, st) for s, g, st in zip(anchors.FPN_SIZES, grid_sizes, strides)]
    )
    assert torch.equal(ours, expected)


def test_fpn_grid_sizes_match_a_real_backbone():
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5).eval()
    with torch.no_grad():
        features = backbone(torch.zeros(1, 3, 96, 160))
    assert [tuple(f.shape[-2:]) for f in features.values()] == anchors.fpn_grid_sizes((96, 160))


def test_half_sizes_round_half_to_even():
    cell = anchors.cell_anchors([32], [0.5])[0]
    # 32 / sqrt(0.5) / 2 = 22.63 -> 23 (width 46); 32 * sqrt(0.5) / 2 = 11.31 -> 11 (height 22)
    assert cell.tolist() == [-round(16 * math.sqrt(2)), -round(8 * math.sqrt(2)), round(16 * math.sqrt(2)), round(8 * math.sqrt(2))]
    assert (cell[2:] - cell[:2]).tolist() == [46.0, 22.0]


def test_fpn_count_at_native_cityscapes_size():
    grid_sizes = anchors.fpn_grid_sizes((512, 1024))
    assert anchors.count_anchors(grid_sizes, 3) == sum(512 // s * 1024 // s * 3 for s in anchors.FPN_STRIDES)


def test_roadmap_worked_example_and_torchvision_disagree_for_tall_ratio():
    roadmap = anchors.roadmap_anchor_xywh((20, 15), 16, 256, 2.0)
    assert roadmap.tolist() == [20 * 16 - 256 / 2, 15 * 16 - 512 / 2, 256, 512]
    tv = anchors.anchor_at((20, 15), 16, 256, 2.0)
    w, h = (tv[2:] - tv[:2]).tolist()
    assert h / w == pytest.approx(2.0, rel=0.01) and w * h == pytest.approx(256**2, rel=0.01)
    assert ((tv[:2] + tv[2:]) / 2).tolist() == [320.0, 240.0]  # same centre, different size
    assert w != roadmap[2].item()


def test_bad_input_message():
    with pytest.raises(ValueError, match="aspect ratio"):
        anchors.cell_anchors([32], [])
