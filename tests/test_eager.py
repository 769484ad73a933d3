"""course_lib.deploy.eager: every variant is undone exactly, and its outputs stay close to the baseline's.

Tolerances (stated per variant in CLOSE): the share of the baseline's confident detections
(score >= 0.5) on six held-out scenes that the variant reproduces with the same class and box
IoU >= the given value.
"""

from __future__ import annotations

import pytest
import torch

from course_lib import zoo
from course_lib.deploy import eager
from course_lib.deploy.benchmark import toycity_val

trained = pytest.mark.skipif(not zoo.available("toycity"), reason="needs the shipped ToyCity weights")

#: variant -> (box IoU, share of confident baseline detections reproduced at that IoU)
CLOSE = {
    "channels_last": (0.95, 0.95),  # same arithmetic, another memory layout
    "rpn_300": (0.9, 0.95),
    "det_20": (0.9, 1.0),  # keeps all detections scoring >= 0.2 while a scene has fewer than 20
    "int8": (0.9, 0.9),
    "bf16": (0.7, 0.9),  # bfloat16 keeps 8 bits of mantissa: boxes move by a few pixels
    "rpn_100": (0.7, 0.75),  # fewer proposals: a few objects are found less well or not at all
    "fast": (0.7, 0.75),
    "fast_bf16": (0.7, 0.7),
    "scale_0.75": (0.5, 0.65),  # a smaller input sees small objects differently
    "fast_small": (0.5, 0.6),
}


@pytest.fixture(scope="module")
def images():
    return [image for image, _ in toycity_val(6)]


@pytest.fixture(scope="module")
def trained_model():
    return zoo.load("toycity", device="cpu")


def outputs(model, images):
    with torch.inference_mode():
        return model(images)


def snapshot(model) -> tuple[dict, dict]:
    config = eager.configuration(model)
    return config, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", [n for n in eager.VARIANTS if n != "fp16"])
def test_apply_then_undo_restores_the_exact_configuration(untrained_toycity_model, images, name):
    config, state = snapshot(untrained_toycity_model)
    before = outputs(untrained_toycity_model, images[:1])
    with eager.apply(untrained_toycity_model, name) as model:
        assert model is untrained_toycity_model
        if name == "compile":
            assert eager.configuration(model)["backbone"] is not config["backbone"]
        else:  # compiling takes a minute on a CPU: the compiled model is not run here
            outputs(model, images[:1])
    after_config, after_state = snapshot(untrained_toycity_model)
    assert after_config == config
    assert after_state.keys() == state.keys() and all(torch.equal(after_state[k], state[k]) for k in state)
    after = outputs(untrained_toycity_model, images[:1])
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])


def test_each_variant_describes_itself_in_one_line():
    for variant in eager.VARIANTS.values():
        line = variant.describe()
        assert line and "\n" not in line
    assert "300 pre-NMS / 300 post-NMS" in eager.get("rpn_300").describe()
    with pytest.raises(ValueError, match="choose one of"):
        eager.get("turbo")


def test_float16_autocast_refuses_the_cpu_with_the_reason(untrained_toycity_model):
    with pytest.raises(RuntimeError, match="CUDA"):
        with eager.apply(untrained_toycity_model, "fp16"):
            pass


def test_detection_cap_keeps_exactly_the_top_detections(untrained_toycity_model, images):
    """Capping detections is a pure filter of the baseline's sorted output, whatever the weights."""
    base = outputs(untrained_toycity_model, images[:1])[0]
    assert len(base["boxes"]) > 20  # untrained: the 50-detection cap is reached
    with eager.apply(untrained_toycity_model, eager.Variant("cap_20", detections=20)):
        capped = outputs(untrained_toycity_model, images[:1])[0]
    # NMS runs per class, but the output is sorted by score overall, so the cap keeps a prefix.
    assert torch.equal(capped["boxes"], base["boxes"][:20]) and torch.equal(capped["labels"], base["labels"][:20])


def test_batched_frames_match_single_frames(untrained_toycity_model, images):
    single = [outputs(untrained_toycity_model, [image])[0] for image in images]
    batched = outputs(untrained_toycity_model, images)
    for one, many in zip(single, batched):
        assert torch.allclose(one["boxes"], many["boxes"], atol=1e-3)


@trained
@pytest.mark.parametrize("name", list(CLOSE))
def test_variant_outputs_stay_close_to_the_baseline(trained_model, images, name):
    box_iou, share = CLOSE[name]
    baseline = outputs(trained_model, images)
    confident = [int((b["scores"] >= 0.5).sum()) for b in baseline]
    assert sum(confident) >= 20, "the test needs confident detections"
    with eager.apply(trained_model, name):
        varied = outputs(trained_model, images)
    reproduced = sum(eager.agreement(b, v, iou=box_iou) * n for b, v, n in zip(baseline, varied, confident))
    assert reproduced / sum(confident) >= share
