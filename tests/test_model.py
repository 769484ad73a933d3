"""course_lib.modeling.maskrcnn: architectures build and run, heads are replaced, COCO rows land in the right place."""

import copy

import pytest
import torch
from torch import nn

from course_lib.classes import CLASS_TO_INDEX, CLASSES, COCO_CATEGORY_ID, NUM_CLASSES
from course_lib.modeling import coco_heads, maskrcnn


def test_toycity_small_is_small_and_runs_both_modes(tiny_training_batch):
    model = maskrcnn.build("toycity_small", min_size=64, max_size=128)
    assert maskrcnn.state_dict_megabytes(model) <= 25.0
    # Random init must be normalised: GroupNorm, not torchvision's frozen BatchNorm default.
    assert any(isinstance(m, nn.GroupNorm) for m in model.backbone.body.modules())
    images, targets = tiny_training_batch
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model(images[:1])[0]
    assert out["masks"].shape[1:] == (1, 64, 128)
    assert model.roi_heads.box_predictor.cls_score.out_features == NUM_CLASSES


@pytest.mark.parametrize("mask_stem_channels", [0, 32])
def test_class_agnostic_masks_give_every_class_one_map_trained_by_every_class(mask_stem_channels, tiny_training_batch):
    model = maskrcnn.build("toycity_small", min_size=64, max_size=128, mask_stem_channels=mask_stem_channels,
                         class_agnostic_masks=True)
    logits_layer = model.roi_heads.mask_predictor.mask_fcn_logits
    assert isinstance(logits_layer, maskrcnn.ClassAgnosticMaskLogits) and logits_layer.out_channels == 1
    logits = logits_layer(torch.rand(3, logits_layer.in_channels, 28, 28))
    assert logits.shape == (3, NUM_CLASSES, 28, 28)
    assert torch.equal(logits[:, 1], logits[:, NUM_CLASSES - 1])
    # A batch holding one class only still trains the map every class reads.
    images, targets = tiny_training_batch
    model(images, targets)["loss_mask"].backward()
    assert logits_layer.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mask_stem_channels", [0, 32])
def test_mask_head_channels_set_the_mask_heads_width(mask_stem_channels, tiny_training_batch):
    model = maskrcnn.build("toycity_small", min_size=64, max_size=128, mask_stem_channels=mask_stem_channels,
                         mask_head_channels=64)
    widths = {m.out_channels for m in model.roi_heads.mask_head.modules() if isinstance(m, torch.nn.Conv2d)}
    assert max(widths) == 64
    assert model.roi_heads.mask_predictor.mask_fcn_logits.in_channels == (32 if mask_stem_channels else 64)
    assert torch.isfinite(model(*tiny_training_batch)["loss_mask"])
    with pytest.raises(ValueError, match="multiple of 64"):
        maskrcnn.build("toycity_small", mask_head_channels=96)
    with pytest.raises(ValueError, match="multiple of 32"):
        maskrcnn.build("toycity_small", mask_head_channels=48, mask_stem_channels=0)
    assert maskrcnn.build("toycity_small", mask_head_channels=96, mask_stem_channels=0).roi_heads.mask_predictor.conv5_mask.in_channels == 96


@pytest.mark.parametrize("arch", ["maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"])
def test_torchvision_archs_without_weights_train_their_norm_layers(arch):
    model = maskrcnn.build(arch, min_size=320, max_size=512)
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == NUM_CLASSES
    assert model.transform.min_size == (320,)
    frozen = [m for m in model.modules() if type(m).__name__ == "FrozenBatchNorm2d"]
    assert not frozen, "a randomly initialised backbone needs trainable normalisation"


def test_build_accepts_short_names_and_rejects_unknown_arch():
    assert maskrcnn.build("r50_fpn_v2", min_size=320, max_size=512).roi_heads.mask_head[0][1].__class__ is nn.BatchNorm2d
    with pytest.raises(ValueError, match="toycity_small"):
        maskrcnn.build("resnet9000")


def test_replace_heads_changes_only_class_layers():
    coco = maskrcnn.build("toycity_small", num_classes=coco_heads.COCO_NUM_SLOTS)
    urban = coco_heads.replace_heads(copy.deepcopy(coco), NUM_CLASSES)
    predictor = urban.roi_heads.box_predictor
    assert predictor.cls_score.weight.shape[0] == NUM_CLASSES
    assert predictor.bbox_pred.weight.shape[0] == 4 * NUM_CLASSES
    assert urban.roi_heads.mask_predictor.mask_fcn_logits.weight.shape[0] == NUM_CLASSES
    assert torch.equal(urban.backbone.fpn.layer_blocks[0][0].weight, coco.backbone.fpn.layer_blocks[0][0].weight)


def test_transfer_coco_heads_copies_matching_rows():
    torch.manual_seed(0)
    coco = maskrcnn.build("toycity_small", num_classes=coco_heads.COCO_NUM_SLOTS)  # random 91-slot model
    urban = maskrcnn.build("toycity_small")  # a fresh model: everything must come from coco
    coco_heads.transfer_coco_heads(coco, urban)
    src, dst = coco.roi_heads, urban.roi_heads
    expected_slot = {name: COCO_CATEGORY_ID.get(name, 0) for name in CLASSES}
    expected_slot["rider"] = COCO_CATEGORY_ID["person"]
    for name, slot in expected_slot.items():
        k = CLASS_TO_INDEX[name]
        assert torch.equal(dst.box_predictor.cls_score.weight[k], src.box_predictor.cls_score.weight[slot]), name
        assert torch.equal(dst.box_predictor.cls_score.bias[k], src.box_predictor.cls_score.bias[slot]), name
        assert torch.equal(dst.box_predictor.bbox_pred.weight[4 * k : 4 * k + 4], src.box_predictor.bbox_pred.weight[4 * slot : 4 * slot + 4]), name
        assert torch.equal(dst.box_predictor.bbox_pred.bias[4 * k : 4 * k + 4], src.box_predictor.bbox_pred.bias[4 * slot : 4 * slot + 4]), name
        assert torch.equal(dst.mask_predictor.mask_fcn_logits.weight[k], src.mask_predictor.mask_fcn_logits.weight[slot]), name
        assert torch.equal(dst.mask_predictor.mask_fcn_logits.bias[k], src.mask_predictor.mask_fcn_logits.bias[slot]), name
    for (key, value), (src_key, src_value) in zip(dst.mask_head.state_dict().items(), src.mask_head.state_dict().items()):
        assert key == src_key and torch.equal(value, src_value), key
    assert torch.equal(urban.backbone.body.layer2[0].conv1.weight, coco.backbone.body.layer2[0].conv1.weight)


def test_transfer_coco_heads_rejects_wrong_shapes():
    small = maskrcnn.build("toycity_small")
    with pytest.raises(ValueError, match="91"):
        coco_heads.transfer_coco_heads(small, copy.deepcopy(small))
    coco = maskrcnn.build("toycity_small", num_classes=coco_heads.COCO_NUM_SLOTS)
    with pytest.raises(ValueError, match="same arch"):
        coco_heads.transfer_coco_heads(coco, maskrcnn.build("toycity_small", fpn_channels=64))


def test_coco_fine_tuning_copy_starts_rider_from_person_and_trains(tiny_training_batch):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    coco = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=coco_heads.COCO_NUM_SLOTS,
                                 min_size=64, max_size=128)
    zero_shot = coco_heads.coco_zero_shot(copy.deepcopy(coco))
    tuned = coco_heads.coco_fine_tuning(zero_shot)
    cls = tuned.roi_heads.box_predictor.cls_score
    assert cls.out_features == NUM_CLASSES
    assert torch.equal(cls.weight[CLASS_TO_INDEX["rider"]], coco.roi_heads.box_predictor.cls_score.weight[COCO_CATEGORY_ID["person"]])
    assert isinstance(zero_shot.roi_heads.box_predictor, coco_heads.CocoUrbanBoxPredictor), "the zero-shot model is left as it was"
    images, targets = tiny_training_batch
    targets[0]["labels"] = torch.tensor([CLASS_TO_INDEX["rider"]])
    losses = tuned.train()(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
