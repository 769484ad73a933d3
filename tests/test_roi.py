"""course_lib.scratch.roi against torchvision.ops.roi_align / roi_pool."""

import pytest
import torch
import torchvision

from course_lib.scratch import roi


def _random_rois(k: int, generator: torch.Generator, image_hw=(96, 120), batch: int = 2) -> torch.Tensor:
    # corners may start up to 24 px before the image and boxes may run past it: partly outside the map
    xy = torch.rand(k, 2, generator=generator) * torch.tensor([image_hw[1] + 24.0, image_hw[0] + 24.0]) - 24
    wh = torch.rand(k, 2, generator=generator) * 70
    batch_index = torch.randint(0, batch, (k, 1), generator=generator).float()
    return torch.cat([batch_index, xy, xy + wh], dim=1)


@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2, 3])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("output_size", [(7, 7), (14, 10)])
def test_roi_align_equals_torchvision(sampling_ratio, aligned, output_size):
    g = torch.Generator().manual_seed(sampling_ratio + 10 * aligned + output_size[1])
    features = torch.randn(2, 4, 12, 15, generator=g)
    rois = _random_rois(25, g)
    rois[0, 3:] = rois[0, 1:3]  # a degenerate (zero-size) box too
    ours = roi.roi_align(features, rois, output_size, 1 / 8, sampling_ratio, aligned)
    expected = torchvision.ops.roi_align(features, rois, output_size, 1 / 8, sampling_ratio, aligned)
    assert (ours - expected).abs().max().item() <= 1e-5


def test_roi_align_accepts_a_list_of_boxes_per_image():
    g = torch.Generator().manual_seed(3)
    features = torch.randn(2, 3, 10, 10, generator=g)
    per_image = [torch.tensor([[1.0, 2.0, 30.0, 25.0]]), torch.tensor([[0.0, 0.0, 8.0, 8.0], [5.0, 5.0, 40.0, 60.0]])]
    ours = roi.roi_align(features, per_image, 7, 0.25, 2)
    assert torch.allclose(ours, torchvision.ops.roi_align(features, per_image, 7, 0.25, 2), atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_roi_pool_equals_torchvision(seed):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 4, 12, 15, generator=g)
    rois = _random_rois(25, g)
    rois[1, 1:] = torch.tensor([-90.0, -90.0, -40.0, -40.0])  # entirely off the map: empty bins -> 0
    ours = roi.roi_pool(features, rois, (7, 6), 1 / 8)
    assert torch.equal(ours, torchvision.ops.roi_pool(features, rois, (7, 6), 1 / 8))
    assert ours[1].abs().sum() == 0


def test_bilinear_sample_at_cells_and_between():
    feature_map = torch.arange(12.0).reshape(1, 3, 4)
    assert bool(roi.bilinear_sample(feature_map, torch.tensor(1.0), torch.tensor(2.0)) == feature_map[0, 1, 2])
    middle = roi.bilinear_sample(feature_map, torch.tensor(0.5), torch.tensor(0.5))
    assert middle.item() == pytest.approx(feature_map[0, :2, :2].mean().item())
    assert roi.bilinear_sample(feature_map, torch.tensor(-1.5), torch.tensor(0.0)).item() == 0.0


def test_bin_sampling_points_lie_inside_their_bin():
    box = torch.tensor([8.0, 16.0, 72.0, 48.0])
    points = roi.bin_sampling_points(box, 4, 1 / 8, sampling_ratio=2, bin_index=(1, 2))
    assert points.shape == (4, 2)
    # box on the map: x 1..9, y 2..6; bin (row 1, col 2) of 4x4: x in [5, 7], y in [3, 4]
    assert bool((points[:, 0] > 5).all() and (points[:, 0] < 7).all())
    assert bool((points[:, 1] > 3).all() and (points[:, 1] < 4).all())


def test_pool_bins_cover_the_rounded_box():
    bins = roi.pool_bins(torch.tensor([10.0, 10.0, 50.0, 30.0]), 2, 1 / 8, (20, 20))
    # 10/8 = 1.25 -> 1, 50/8 = 6.25 -> 6: columns 1..6 inclusive; rows 1..4 (30/8 = 3.75 -> 4)
    assert bins[0][0][2] == 1 and bins[0][1][3] == 7
    assert bins[0][0][0] == 1 and bins[1][0][1] == 5


def test_bad_rois_message():
    with pytest.raises(ValueError, match="batch_index"):
        roi.roi_align(torch.zeros(1, 1, 4, 4), torch.zeros(3, 4), 2)


@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("feature_hw", [(12, 15), (15, 12)])  # both contraction orders
def test_separable_roi_align_equals_torchvision_with_its_gradient(sampling_ratio, aligned, feature_hw):
    g = torch.Generator().manual_seed(sampling_ratio + 10 * aligned + feature_hw[0])
    features = torch.randn(2, 4, *feature_hw, generator=g, requires_grad=True)
    rois = _random_rois(25, g)
    rois[0, 3:] = rois[0, 1:3]  # a degenerate (zero-size) box too
    ours = roi.roi_align_separable(features, rois, (7, 5), 1 / 8, sampling_ratio, aligned)
    expected = torchvision.ops.roi_align(features, rois, (7, 5), 1 / 8, sampling_ratio, aligned)
    assert (ours - expected).abs().max().item() <= 1e-5
    upstream = torch.randn(expected.shape, generator=g)
    (grad_ours,) = torch.autograd.grad((ours * upstream).sum(), features)
    (grad_expected,) = torch.autograd.grad((expected * upstream).sum(), features)
    assert (grad_ours - grad_expected).abs().max().item() <= 1e-5


def test_separable_roi_align_refuses_adaptive_sampling():
    with pytest.raises(ValueError, match="fixed sampling_ratio"):
        roi.roi_align_separable(torch.zeros(1, 1, 4, 4), torch.tensor([[0.0, 0, 0, 8, 8]]), 2, 0.5, sampling_ratio=0)


def test_separable_pooler_equals_torchvisions_pooler():
    """Same level assignment, scales and result as torchvision's MultiScaleRoIAlign, for a 256x384 image."""
    g = torch.Generator().manual_seed(5)
    features = {name: torch.randn(2, 8, 256 // s, 384 // s, generator=g, requires_grad=True)
                for name, s in (("0", 4), ("1", 8), ("2", 16))}
    # sqrt(area) 7, 134 and 274 px: levels stride 4, 8 and 16 (torchvision's LevelMapper)
    boxes = [torch.tensor([[2.0, 3.0, 10.0, 9.0], [10.0, 10.0, 160.0, 130.0], [0.0, 0.0, 300.0, 250.0]]),
             torch.tensor([[40.0, 30.0, 41.0, 31.0]])]
    args = (["0", "1", "2"], 7, 2)
    pooler = roi.SeparableMultiScaleRoIAlign(*args)
    ours = pooler(features, boxes, [(256, 384)] * 2)
    expected = torchvision.ops.MultiScaleRoIAlign(*args)(features, boxes, [(256, 384)] * 2)
    assert pooler.map_levels(boxes).tolist() == [0, 1, 2, 0]
    assert ours.shape == expected.shape == (4, 8, 7, 7)
    assert (ours - expected).abs().max().item() <= 1e-5
    upstream = torch.randn(expected.shape, generator=g)
    grads_ours = torch.autograd.grad((ours * upstream).sum(), list(features.values()))
    grads_expected = torch.autograd.grad((expected * upstream).sum(), list(features.values()))
    assert all((a - b).abs().max().item() <= 1e-5 for a, b in zip(grads_ours, grads_expected))
    # without a gradient to compute, it is torchvision's kernel itself
    with torch.no_grad():
        assert torch.equal(pooler(features, boxes, [(256, 384)] * 2),
                           torchvision.ops.MultiScaleRoIAlign(*args)(features, boxes, [(256, 384)] * 2))
