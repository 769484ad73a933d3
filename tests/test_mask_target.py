"""course_lib.mask_target: binary vs torchvision's soft mask targets."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import roi_heads as torchvision_roi_heads
from torchvision.models.detection.roi_heads import RoIHeads, project_masks_on_boxes

from course_lib import mask_target
from course_lib.model import build


def _thin_ring_target() -> dict[str, torch.Tensor]:
    """One 1-pixel ring (a bicycle tyre) and one solid block, 64 x 96 image."""
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(96.0), indexing="ij")
    radius = ((yy - 30) ** 2 + (xx - 30) ** 2).sqrt()
    ring = (radius - 12).abs() < 0.6
    block = torch.zeros(64, 96, dtype=torch.bool)
    block[10:50, 60:90] = True
    masks = torch.stack([ring, block])
    boxes = torch.tensor([[17.0, 17.0, 44.0, 44.0], [60.0, 10.0, 90.0, 50.0]])
    return {"masks": masks.to(torch.uint8), "boxes": boxes, "labels": torch.tensor([8, 3])}


def test_binary_targets_threshold_the_soft_ones():
    target = _thin_ring_target()
    args = (target["masks"], target["boxes"], torch.arange(2), 28)
    soft, binary = project_masks_on_boxes(*args), mask_target.project_masks_binary(*args)
    assert torch.equal(binary, (soft >= 0.5).float())
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    # the thin ring: its soft target leaves little margin above 0.5; the solid block's is ~1
    strength = mask_target.mean_soft_target(target)
    assert strength[0] < 0.85 and strength[1] > 0.97


def test_binary_heads_change_the_mask_loss_only_and_restore_torchvision():
    torch.manual_seed(0)
    model = build("toycity_small", min_size=64, max_size=96).train()
    target = _thin_ring_target()
    images = [torch.rand(3, 64, 96)]
    losses = {}
    for kind in ("soft", "binary"):
        mask_target.set_mask_targets(model, kind)
        torch.manual_seed(1)  # same proposals sampled in both runs
        losses[kind] = {k: v.item() for k, v in model(images, [target]).items()}
        assert torchvision_roi_heads.project_masks_on_boxes is project_masks_on_boxes
    assert losses["soft"]["loss_mask"] != losses["binary"]["loss_mask"]
    assert all(losses["soft"][k] == losses["binary"][k] for k in losses["soft"] if k != "loss_mask")


def test_binary_heads_restore_torchvision_when_the_step_fails():
    model = mask_target.set_mask_targets(build("toycity_small", min_size=64, max_size=96).train())
    with pytest.raises(ValueError, match="masks"):  # RoIHeads rejects targets without masks, mid-forward
        model([torch.rand(3, 64, 96)], [{"boxes": torch.tensor([[1.0, 1.0, 20.0, 30.0]]), "labels": torch.tensor([1])}])
    assert torchvision_roi_heads.project_masks_on_boxes is project_masks_on_boxes


def test_the_switch_is_checked():
    model = build("toycity_small")
    assert type(model.roi_heads) is RoIHeads  # torchvision's soft targets unless asked
    assert isinstance(mask_target.set_mask_targets(model, "binary").roi_heads, mask_target.BinaryMaskTargetRoIHeads)
    with pytest.raises(ValueError, match="binary, soft"):
        mask_target.set_mask_targets(model, "hard")
