"""course_lib.modeling.paste: pasting box-frame masks back into the image, and what torchvision's rounding costs."""

import pytest
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from course_lib.modeling.maskrcnn import build
from course_lib.modeling.paste import (
    ExactPasteTransform,
    oracle_masks,
    paste_masks,
    perfect_masks_in_detected_boxes,
    resized_pixel_offset,
)
from course_lib.structures.masks import mask_iou


def _rectangle(x0: int, y0: int, x1: int, y1: int, height: int = 40, width: int = 60) -> dict:
    """A target with one filled rectangle (pixels x0..x1-1, y0..y1-1) and its pixel-edge box."""
    masks = torch.zeros(1, height, width, dtype=torch.uint8)
    masks[0, y0:y1, x0:x1] = 1
    return {"masks": masks, "boxes": torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32)}


def test_a_full_map_pastes_onto_exactly_the_box_pixels():
    box = torch.tensor([[3.0, 5.0, 10.0, 9.0]])
    for offset in (0.0, 0.5):
        pasted = paste_masks(torch.ones(1, 28, 28), box, 20, 30, pixel_offset=offset, threshold=0.5)
        assert pasted.dtype == torch.uint8
        assert torch.equal(pasted[0], _rectangle(3, 5, 10, 9, 20, 30)["masks"][0]), offset


def test_boxes_outside_or_across_the_border_are_clipped():
    boxes = torch.tensor([[-5.0, -5.0, 4.0, 4.0], [50.0, 50.0, 60.0, 60.0]])
    pasted = paste_masks(torch.ones(2, 28, 28), boxes, 20, 30, threshold=0.5)
    assert pasted[0].sum() == 16 and pasted[1].sum() == 0


@pytest.mark.parametrize("size", [(4, 9), (6, 15), (20, 30)])
def test_round_trip_through_torchvision_targets_recovers_small_objects(size):
    """Target -> 28x28 (torchvision's RoIAlign) -> paste: ours keeps the object, torchvision's paste loses pixels."""
    w, h = size
    ours, theirs = [], []
    for x0 in range(5, 9):
        target = _rectangle(x0, 7, x0 + w, 7 + h)
        ours.append(mask_iou(oracle_masks(target)[:, 0], target["masks"])[0, 0])
        theirs.append(mask_iou(oracle_masks(target, paste="torchvision")[:, 0], target["masks"])[0, 0])
    assert min(ours) >= 0.95, ours
    assert sum(ours) >= sum(theirs), (ours, theirs)
    if w <= 6:  # a one-pixel rounding error is a large share of a small object
        assert sum(theirs) / len(theirs) < 0.9, theirs


def test_oracle_rejects_an_unknown_paste():
    with pytest.raises(ValueError, match="paste must be"):
        oracle_masks(_rectangle(1, 1, 5, 5), paste="nearest")


def test_resized_offset_is_zero_without_resize_and_follows_the_scale():
    assert resized_pixel_offset((128, 256), (128, 256)) == (0.0, 0.0)
    assert resized_pixel_offset((256, 512), (128, 256)) == (0.25, 0.25)  # upscaled 2x
    assert resized_pixel_offset((64, 128), (128, 256)) == (-0.5, -0.5)  # downscaled 2x


def test_resized_paste_matches_pasting_at_the_resized_size():
    """Pasting into the original image reads the map where the resized image's pixels would.

    A map that is linear in x and y makes bilinear sampling exact, so original pixel J (resized
    coordinate 2J + 0.5 at scale 2) must read the mean of resized pixels 2J and 2J + 1.
    """
    ramp = torch.linspace(0, 1, 28)
    maps = (ramp[None, :] + 2 * ramp[:, None])[None]  # [1, 28, 28]
    box_resized = torch.tensor([[8.0, 4.0, 64.0, 60.0]])
    at_resized = paste_masks(maps, box_resized, 64, 96)
    at_original = paste_masks(maps, box_resized / 2, 32, 48, pixel_offset=resized_pixel_offset((64, 96), (32, 48)))
    between = (at_resized[:, 0::2, 0::2] + at_resized[:, 1::2, 1::2] + at_resized[:, 0::2, 1::2] + at_resized[:, 1::2, 0::2]) / 4
    interior = (slice(None), slice(4, 28), slice(6, 30))  # away from the box edges, where "border" padding holds values
    assert torch.allclose(at_original[interior], between[interior], atol=1e-5)


def test_the_paste_changes_only_the_masks(untrained_toycity_model):
    course_model = untrained_toycity_model  # toycity_small pastes with course_lib.modeling.paste by default
    torch.manual_seed(0)
    torchvision_model = build("toycity_small", paste="torchvision").eval()  # the same seed: the same weights
    assert type(course_model.transform).__name__ == "ExactPasteTransform"
    assert type(torchvision_model.transform).__name__ == "GeneralizedRCNNTransform"
    image = torch.rand(3, 96, 160)  # resized to 128 x 213 inside: the resized offset is exercised
    with torch.no_grad():
        ours, theirs = course_model([image])[0], torchvision_model([image])[0]
    assert len(ours["boxes"]) > 0
    for key in ("boxes", "labels", "scores"):
        assert torch.equal(ours[key], theirs[key]), key
    assert ours["masks"].shape == theirs["masks"].shape
    assert not torch.equal(ours["masks"], theirs["masks"])
    with pytest.raises(ValueError, match="paste must be one of"):
        build("toycity_small", paste="nearest")


def test_the_r50_models_paste_like_torchvision_unless_asked():
    assert type(build("r50_fpn", min_size=64, max_size=96).transform) is GeneralizedRCNNTransform
    exact = build("r50_fpn", min_size=64, max_size=96, paste="course_lib").transform
    assert isinstance(exact, ExactPasteTransform) and (exact.min_size, exact.max_size) == ((64,), 96)


def test_perfect_masks_replace_only_matched_detections():
    masks = torch.zeros(2, 32, 64, dtype=torch.uint8)
    masks[0, 4:20, 10:30] = 1
    masks[1, 10:26, 40:60] = 1
    target = {"boxes": torch.tensor([[10.0, 4, 30, 20], [40, 10, 60, 26]]), "labels": torch.tensor([3, 1]), "masks": masks}
    empty = torch.zeros(3, 1, 32, 64, dtype=torch.uint8)
    prediction = {
        # a good box of the right class, a good box of the wrong class, and a box on nothing
        "boxes": torch.tensor([[10.5, 4.0, 30.0, 20.5], [40.0, 10.0, 60.0, 26.0], [0.0, 0.0, 8.0, 8.0]]),
        "labels": torch.tensor([3, 3, 1]), "scores": torch.ones(3), "masks": empty,
    }
    out = perfect_masks_in_detected_boxes(prediction, target)
    inter = (out[0, 0].bool() & masks[0].bool()).sum()
    union = (out[0, 0].bool() | masks[0].bool()).sum()
    assert inter / union > 0.9
    assert out[1:].sum() == 0  # wrong class, and no object: their (empty) masks are kept
    assert prediction["masks"].sum() == 0  # the input is not modified
