"""course_lib.modeling.mask_loss: binary vs torchvision's soft mask targets."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import roi_heads as torchvision_roi_heads
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_loss, project_masks_on_boxes

from course_lib.modeling import mask_loss
from course_lib.modeling.maskrcnn import build


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
    soft, binary = project_masks_on_boxes(*args), mask_loss.project_masks_binary(*args)
    assert torch.equal(binary, (soft >= 0.5).float())
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    # the thin ring: its soft target leaves little margin above 0.5; the solid block's is ~1
    strength = mask_loss.mean_soft_target(target)
    assert strength[0] < 0.85 and strength[1] > 0.97


def _training_losses(model: torch.nn.Module, seed: int = 1) -> dict[str, float]:
    torch.manual_seed(seed)  # the same proposals sampled in every call
    return {k: v.item() for k, v in model([torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(0))],
                                          [_thin_ring_target()]).items()}


def test_mask_loss_heads_with_torchvisions_loss_train_exactly_like_torchvisions():
    torch.manual_seed(0)
    model = build("toycity_small", min_size=64, max_size=96).train()
    assert type(model.roi_heads) is RoIHeads  # torchvision's soft targets unless asked
    expected = _training_losses(model)
    model.roi_heads = mask_loss.MaskLossRoIHeads.like(model.roi_heads, "soft", 0.0)
    assert _training_losses(model) == expected


def test_binary_targets_change_the_mask_loss_only():
    torch.manual_seed(0)
    model = build("toycity_small", min_size=64, max_size=96).train()
    soft = _training_losses(model)
    model.roi_heads = mask_loss.MaskLossRoIHeads.like(model.roi_heads, "binary")
    binary = _training_losses(model)
    assert soft["loss_mask"] != binary["loss_mask"]
    assert all(soft[k] == binary[k] for k in soft if k != "loss_mask")


def test_torchvisions_own_loss_is_left_alone():
    """A model with the course's loss next to a plain torchvision one: the plain one trains as before."""
    torch.manual_seed(0)
    plain = build("toycity_small", min_size=64, max_size=96).train()
    before = _training_losses(plain)
    torch.manual_seed(0)
    course = build("toycity_small", min_size=64, max_size=96, mask_targets="binary", mask_dice_weight=3.0).train()
    _training_losses(course)
    assert torchvision_roi_heads.maskrcnn_loss is maskrcnn_loss
    assert _training_losses(plain) == before


def test_the_builder_takes_the_mask_loss_options():
    model = build("toycity_small", mask_targets="binary", mask_dice_weight=2.0)
    assert isinstance(model.roi_heads, mask_loss.MaskLossRoIHeads)
    assert (model.roi_heads.mask_targets, model.roi_heads.dice_weight) == ("binary", 2.0)
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 128  # the small model's settings kept
    with pytest.raises(ValueError, match="binary, soft"):
        build("toycity_small", mask_targets="hard")
    with pytest.raises(ValueError, match="dice weight"):
        build("toycity_small", mask_dice_weight=-1)
    with pytest.raises(ValueError, match="masks"):  # RoIHeads rejects targets without masks
        model.train()([torch.rand(3, 64, 96)], [{"boxes": torch.tensor([[1.0, 1.0, 20.0, 30.0]]), "labels": torch.tensor([1])}])


def _loss_inputs() -> tuple:
    """Logits for 2 RoIs x 9 classes on the ring/block target, as torchvision's RoIHeads passes them."""
    target = _thin_ring_target()
    torch.manual_seed(0)
    logits = torch.randn(2, 9, 28, 28)
    return logits, [target["boxes"] + torch.tensor([1.0, -1.0, 2.0, 1.0])], [target["masks"]], [target["labels"]], [torch.arange(2)]


def test_mask_loss_without_dice_is_torchvisions():
    inputs = _loss_inputs()
    assert torch.allclose(mask_loss.mask_loss(*inputs), maskrcnn_loss(*inputs))
    logits, proposals, masks, labels, idxs = inputs
    binary = mask_loss.project_masks_binary(masks[0], proposals[0], idxs[0], 28)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[[0, 1], [8, 3]], binary)
    assert torch.allclose(mask_loss.mask_loss(*inputs, project=mask_loss.project_masks_binary), expected)


def test_dice_loss_scores_overlap_per_object():
    target = torch.zeros(2, 28, 28)
    target[0, 10, 5:25] = 1  # a thin line: 20 cells
    target[1, 4:24, 4:24] = 1  # a block: 400 cells
    perfect, inverted = (target * 2 - 1) * 20, (1 - target * 2) * 20
    assert mask_loss.dice_loss(perfect, target) < 0.01
    assert mask_loss.dice_loss(inverted, target) > 0.99
    # missing an object entirely: the per-cell cross-entropy charges by area (the block 20x the
    # line), the dice term charges each object the same (half its range: one of two RoIs)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    extra_bce, extra_dice = [], []
    for k in (0, 1):
        missed = perfect.clone()
        missed[k] = -20
        extra_bce.append(bce(missed, target) - bce(perfect, target))
        extra_dice.append(mask_loss.dice_loss(missed, target) - mask_loss.dice_loss(perfect, target))
    assert torch.allclose(extra_bce[1] / extra_bce[0], torch.tensor(20.0), rtol=1e-3)
    assert torch.allclose(torch.stack(extra_dice), torch.tensor([0.5, 0.5]), atol=0.03)


def test_dice_weight_adds_the_dice_term():
    inputs = _loss_inputs()
    logits, proposals, masks, labels, idxs = inputs
    binary = mask_loss.project_masks_binary(masks[0], proposals[0], idxs[0], 28)
    dice = mask_loss.dice_loss(logits[[0, 1], [8, 3]], binary)
    without = mask_loss.mask_loss(*inputs, project=mask_loss.project_masks_binary)
    with_dice = mask_loss.mask_loss(*inputs, project=mask_loss.project_masks_binary, dice_weight=0.5)
    assert torch.allclose(with_dice, without + 0.5 * dice)


def test_dice_weight_reaches_the_training_loss():
    losses = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        losses[weight] = _training_losses(build("toycity_small", min_size=64, max_size=96, mask_targets="binary",
                                                mask_dice_weight=weight).train())
    assert losses[1.0]["loss_mask"] > losses[0.0]["loss_mask"]
    assert losses[1.0]["loss_classifier"] == losses[0.0]["loss_classifier"]
