"""course_lib.modeling.mask_skip: the stem reaches the mask head and nothing else; the pooler reads it at stride 2."""

import pytest
import torch
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
from torchvision.ops import roi_align

from course_lib.modeling import maskrcnn as models
from course_lib.modeling.internals import trace
from course_lib.modeling.mask_skip import STEM, StemSkipMaskPooler, fpn_levels


def test_backbone_adds_a_stride_2_stem_that_the_rpn_does_not_see():
    model = models.build("toycity_small", min_size=64, max_size=128, mask_stem_channels=16)
    features = model.backbone(torch.rand(1, 3, 64, 128))
    assert list(features) == ["0", "1", "2", "pool", STEM]
    assert features[STEM].shape == (1, 16, 32, 64)  # stride 2
    assert list(fpn_levels(features)) == ["0", "1", "2", "pool"]
    # one anchor size per FPN level: fed the stem too, the RPN's anchor generator would refuse
    model.eval()
    images, _ = model.transform([torch.rand(3, 64, 128)])
    proposals, _ = model.rpn(images, features)
    assert proposals[0].shape[1] == 4


def test_the_mask_loss_trains_the_stem_and_inference_runs(tiny_training_batch):
    torch.manual_seed(0)
    model = models.build("toycity_small", min_size=64, max_size=128)
    images, targets = tiny_training_batch
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    losses["loss_mask"].backward()
    assert model.backbone.stem_projection.weight.grad.abs().sum() > 0
    assert model.backbone.body.conv1.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(images[:1])[0]
    assert out["masks"].shape[1:] == (1, 64, 128)
    t = trace(model, images[0])  # the Week 1 trace: FPN levels only, mask head still fed the stem
    assert STEM not in t.features
    assert t.mask_logits.shape[1:] == (models.NUM_CLASSES, 28, 28)


def test_stem_pooler_reads_the_stem_at_stride_2():
    pooler = StemSkipMaskPooler(["0"], output_size=7, sampling_ratio=2)
    features = {"0": torch.rand(1, 8, 16, 32), STEM: torch.rand(1, 4, 32, 64)}
    boxes = [torch.tensor([[4.0, 6.0, 40.0, 30.0], [0.0, 0.0, 64.0, 64.0]])]
    fpn, stem = pooler(features, boxes, [(64, 128)])
    assert fpn.shape == (2, 8, 7, 7)
    expected = roi_align(features[STEM], boxes, 14, spatial_scale=0.5, sampling_ratio=2)
    torch.testing.assert_close(stem, expected)


@pytest.mark.parametrize("channels", [0, 8])
def test_mask_stem_channels_zero_is_torchvisions_mask_head(channels):
    model = models.build("toycity_small", min_size=64, max_size=128, mask_stem_channels=channels)
    assert isinstance(model.roi_heads.mask_head, MaskRCNNHeads) == (channels == 0)
    assert (STEM in model.backbone(torch.rand(1, 3, 64, 128))) == (channels > 0)
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == models.NUM_CLASSES
