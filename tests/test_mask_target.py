"""course_lib.mask_target: binary vs torchvision's soft mask targets."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import roi_heads as torchvision_roi_heads
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_loss, project_masks_on_boxes

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
        assert torchvision_roi_heads.maskrcnn_loss is maskrcnn_loss
    assert losses["soft"]["loss_mask"] != losses["binary"]["loss_mask"]
    assert all(losses["soft"][k] == losses["binary"][k] for k in losses["soft"] if k != "loss_mask")


def test_binary_heads_restore_torchvision_when_the_step_fails():
    model = mask_target.set_mask_targets(build("toycity_small", min_size=64, max_size=96).train())
    with pytest.raises(ValueError, match="masks"):  # RoIHeads rejects targets without masks, mid-forward
        model([torch.rand(3, 64, 96)], [{"boxes": torch.tensor([[1.0, 1.0, 20.0, 30.0]]), "labels": torch.tensor([1])}])
    assert torchvision_roi_heads.maskrcnn_loss is maskrcnn_loss


def test_the_switch_is_checked():
    model = build("toycity_small")
    assert type(model.roi_heads) is RoIHeads  # torchvision's soft targets unless asked
    assert isinstance(mask_target.set_mask_targets(model, "binary").roi_heads, mask_target.MaskLossRoIHeads)
    assert type(mask_target.set_mask_targets(model, "soft").roi_heads) is RoIHeads
    with pytest.raises(ValueError, match="binary, soft"):
        mask_target.set_mask_targets(model, "hard")
    with pytest.raises(ValueError, match="dice_weight"):
        mask_target.set_mask_targets(model, "binary", dice_weight=-1)


def _loss_inputs() -> tuple:
    """Logits for 2 RoIs x 9 classes on the ring/block target, as torchvision's RoIHeads passes them."""
    target = _thin_ring_target()
    torch.manual_seed(0)
    logits = torch.randn(2, 9, 28, 28)
    return logits, [target["boxes"] + torch.tensor([1.0, -1.0, 2.0, 1.0])], [target["masks"]], [target["labels"]], [torch.arange(2)]


def test_mask_loss_without_dice_is_torchvisions():
    inputs = _loss_inputs()
    assert torch.allclose(mask_target.mask_loss(*inputs), maskrcnn_loss(*inputs))
    logits, proposals, masks, labels, idxs = inputs
    binary = mask_target.project_masks_binary(masks[0], proposals[0], idxs[0], 28)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[[0, 1], [8, 3]], binary)
    assert torch.allclose(mask_target.mask_loss(*inputs, project=mask_target.project_masks_binary), expected)


def test_dice_loss_scores_overlap_per_object():
    target = torch.zeros(2, 28, 28)
    target[0, 10, 5:25] = 1  # a thin line: 20 cells
    target[1, 4:24, 4:24] = 1  # a block: 400 cells
    perfect, inverted = (target * 2 - 1) * 20, (1 - target * 2) * 20
    assert mask_target.dice_loss(perfect, target) < 0.01
    assert mask_target.dice_loss(inverted, target) > 0.99
    # missing an object entirely: the per-cell cross-entropy charges by area (the block 20x the
    # line), the dice term charges each object the same (half its range: one of two RoIs)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    extra_bce, extra_dice = [], []
    for k in (0, 1):
        missed = perfect.clone()
        missed[k] = -20
        extra_bce.append(bce(missed, target) - bce(perfect, target))
        extra_dice.append(mask_target.dice_loss(missed, target) - mask_target.dice_loss(perfect, target))
    assert torch.allclose(extra_bce[1] / extra_bce[0], torch.tensor(20.0), rtol=1e-3)
    assert torch.allclose(torch.stack(extra_dice), torch.tensor([0.5, 0.5]), atol=0.03)


def test_dice_weight_adds_the_dice_term():
    inputs = _loss_inputs()
    logits, proposals, masks, labels, idxs = inputs
    binary = mask_target.project_masks_binary(masks[0], proposals[0], idxs[0], 28)
    dice = mask_target.dice_loss(logits[[0, 1], [8, 3]], binary)
    without = mask_target.mask_loss(*inputs, project=mask_target.project_masks_binary)
    with_dice = mask_target.mask_loss(*inputs, project=mask_target.project_masks_binary, dice_weight=0.5)
    assert torch.allclose(with_dice, without + 0.5 * dice)


def test_dice_weight_reaches_the_training_loss():
    model = build("toycity_small", min_size=64, max_size=96).train()
    images, target = [torch.rand(3, 64, 96)], _thin_ring_target()
    losses = {}
    for weight in (0.0, 1.0):
        mask_target.set_mask_targets(model, "binary", dice_weight=weight)
        torch.manual_seed(1)
        losses[weight] = model(images, [target])
    assert losses[1.0]["loss_mask"] > losses[0.0]["loss_mask"]
    assert torch.equal(losses[1.0]["loss_classifier"], losses[0.0]["loss_classifier"])
