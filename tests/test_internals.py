"""course_lib.modeling.internals.trace reproduces a Mask R-CNN's own output exactly."""

import pytest
import torch
from torchvision.ops import batched_nms

from course_lib.classes import NUM_CLASSES
from course_lib.modeling import maskrcnn as model_lib
from course_lib.modeling.internals import trace


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    # random weights are fine here: the test is about plumbing, not accuracy; a low score
    # threshold makes sure detections (and hence masks) exist
    model = model_lib.build("toycity_small", box_score_thresh=0.0, box_detections_per_img=20)
    return model.eval()


@pytest.fixture(scope="module")
def image():
    return torch.rand(3, 100, 170, generator=torch.Generator().manual_seed(1))


def test_trace_equals_model_output(small_model, image):
    t = trace(small_model, image)
    with torch.no_grad():
        (expected,) = small_model([image])
    assert len(t.final["boxes"]) > 0
    for key in ("boxes", "labels", "scores", "masks"):
        assert torch.equal(t.final[key], expected[key]), key


def test_trace_equals_torchvision_r50_fpn_output(image):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, min_size=96,
                                  max_size=160, box_score_thresh=0.0, box_detections_per_img=10).eval()
    t = trace(model, image)
    with torch.no_grad():
        (expected,) = model([image])
    assert len(t.features) == 5 and len(t.final["boxes"]) > 0
    for key in ("boxes", "labels", "scores", "masks"):
        assert torch.equal(t.final[key], expected[key]), key


def test_trace_shapes_and_bookkeeping(small_model, image):
    t = trace(small_model, image)
    num_anchors = sum(len(a) for a in t.anchors)
    assert t.objectness.shape == (num_anchors,) and t.rpn_deltas.shape == (num_anchors, 4)
    assert t.decoded.shape == (num_anchors, 4) and len(t.anchor_levels) == num_anchors
    assert len(t.features) == len(t.anchors) == len(t.strides)
    assert len(t.proposals) <= len(t.pre_nms_boxes) <= num_anchors
    # the pre-NMS candidates are exactly what the RPN's per-level NMS turns into the proposals
    rpn = small_model.rpn
    keep = batched_nms(t.pre_nms_boxes, t.pre_nms_scores, t.pre_nms_levels, rpn.nms_thresh)[: rpn.post_nms_top_n()]
    assert torch.equal(t.pre_nms_boxes[keep], t.proposals)
    num_props = len(t.proposals)
    assert t.class_probs.shape == (num_props, NUM_CLASSES)
    assert torch.allclose(t.class_probs.sum(1), torch.ones(num_props))
    assert t.box_deltas.shape == (num_props, 4 * NUM_CLASSES) and t.class_boxes.shape == (num_props, NUM_CLASSES, 4)
    num_det = len(t.boxes)
    assert t.mask_logits.shape == (num_det, NUM_CLASSES, 28, 28)
    # inference keeps the predicted class's mask out of all C of them
    chosen = t.mask_logits.sigmoid()[torch.arange(num_det), t.labels]
    assert torch.equal(t.mask_probs[:, 0], chosen)
    # each detection is the per-class box and probability of a proposal
    assert torch.equal(t.class_probs[t.detection_proposal, t.labels], t.scores)
    assert t.final["masks"].shape[-2:] == image.shape[-2:]


def test_trace_refuses_training_mode(small_model, image):
    small_model.train()
    try:
        with pytest.raises(ValueError, match="eval"):
            trace(small_model, image)
    finally:
        small_model.eval()


def test_chapter_subject_falls_back_to_toycity_offline(monkeypatch, small_model):
    from course_lib import zoo
    from course_lib.zoo import subjects

    monkeypatch.setattr(zoo, "course_model", lambda prefer_coco=None: (small_model, "ToyCity model (test)"))
    subject = subjects.chapter_subject(seed=2)
    assert subject.model_name == "ToyCity model (test)" and subject.data_name.startswith("ToyCity scene 2")
    assert subject.image.shape == (3, small_model.transform.min_size[0], 2 * small_model.transform.min_size[0])
    assert 0.0 <= float(subject.image.min()) and float(subject.image.max()) <= 1.0


def test_real_street_image_is_none_without_network_or_cityscapes(monkeypatch):
    from course_lib import environment
    from course_lib.zoo import subjects

    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(environment, "cityscapes_root", lambda: None)
    monkeypatch.setattr(subjects, "download", offline)
    assert subjects._real_street_image() is None
