"""course_lib.data.augment: tight boxes after rotation, sanitising, and the training pipeline's contract."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision import tv_tensors
from torchvision.ops import box_iou, masks_to_boxes
from torchvision.transforms.v2 import functional as F

from course_lib.data.augment import BoxesFromMasks, eval_transforms, sanitize, train_transforms
from course_lib.structures.instances import boxes_from_masks, make_target

H, W = 120, 160


def ellipse_mask(cx: float, cy: float, a: float, b: float) -> torch.Tensor:
    """[H, W] uint8 axis-aligned ellipse with semi-axes a (x) and b (y) centred on (cx, cy)."""
    y, x = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    return (((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1).to(torch.uint8)


def sample(masks: list[torch.Tensor], labels: list[int]) -> tuple[tv_tensors.Image, dict]:
    image = tv_tensors.Image(torch.rand(3, H, W))
    return image, make_target(torch.stack(masks), torch.tensor(labels), torch.zeros(len(labels)), image_id=0)


def rotated_ellipse_box(cx: float, cy: float, a: float, b: float, degrees: float) -> torch.Tensor:
    """Exact tight box of the ellipse rotated about its centre: half-extents from the rotated axes."""
    t = math.radians(degrees)
    half_w = math.sqrt((a * math.cos(t)) ** 2 + (b * math.sin(t)) ** 2)
    half_h = math.sqrt((a * math.sin(t)) ** 2 + (b * math.cos(t)) ** 2)
    return torch.tensor([[cx - half_w, cy - half_h, cx + half_w, cy + half_h]])


def test_v2_rotation_gives_loose_boxes_and_boxes_from_masks_are_tight():
    cx, cy, a, b = W / 2, H / 2, 40.0, 20.0
    image, target = sample([ellipse_mask(cx, cy, a, b)], [3])
    # rotate about the image centre, which is also the ellipse's centre
    rotated_image, rotated = F.rotate(image, 30.0), dict(target)
    rotated["boxes"], rotated["masks"] = F.rotate(target["boxes"], 30.0), F.rotate(target["masks"], 30.0)
    exact = rotated_ellipse_box(cx, cy, a, b, 30.0)

    v2_iou = box_iou(rotated["boxes"].as_subclass(torch.Tensor), exact).item()
    _, tightened = BoxesFromMasks()(rotated_image, rotated)
    ours_iou = box_iou(tightened["boxes"].as_subclass(torch.Tensor), exact).item()
    assert v2_iou < 0.9, v2_iou
    assert ours_iou > 0.95, ours_iou
    assert tightened["area"].item() == pytest.approx(math.pi * a * b, rel=0.03)


def test_sanitize_drops_instances_that_left_the_frame_with_all_their_fields():
    image, target = sample([ellipse_mask(30, 30, 10, 10), ellipse_mask(100, 60, 20, 10)], [1, 3])
    target["iscrowd"] = torch.tensor([0, 1])
    target["masks"][0] = 0  # e.g. rotated out of the image
    _, target = sanitize()(*BoxesFromMasks()(image, target))
    assert target["labels"].tolist() == [3]
    assert target["iscrowd"].tolist() == [1]
    assert target["masks"].shape == (1, H, W) and target["boxes"].shape == (1, 4) and target["area"].shape == (1,)


def test_train_transforms_keep_boxes_tight_and_images_in_range():
    torch.manual_seed(0)
    image, target = sample([ellipse_mask(40, 40, 25, 15), ellipse_mask(110, 80, 30, 20)], [1, 3])
    pipeline = train_transforms(max_rotation=30.0)
    for _ in range(5):
        out_image, out = pipeline(image, target)
        assert out_image.shape == (3, H, W) and 0 <= out_image.min() and out_image.max() <= 1
        assert len(out["labels"]) == len(out["masks"]) == len(out["boxes"]) == len(out["area"])
        assert torch.equal(out["boxes"].as_subclass(torch.Tensor), make_target(out["masks"], out["labels"],
                                                                                out["iscrowd"], 0)["boxes"])


def test_eval_transforms_accept_uint8_and_do_nothing_else():
    image, target = sample([ellipse_mask(40, 40, 25, 15)], [1])
    uint8_image = tv_tensors.Image((image * 255).round().to(torch.uint8))
    out_image, out = eval_transforms()(uint8_image, target)
    assert out_image.dtype == torch.float32 and torch.allclose(out_image, image, atol=1 / 255)
    assert torch.equal(out["masks"], target["masks"])


def test_toycity_items_keep_every_per_instance_field_aligned_when_instances_leave_the_frame():
    from course_lib.data.toycity import ToyCityDataset

    torch.manual_seed(0)
    zoom_in = train_transforms(scale_range=(2.0, 2.0), max_rotation=20.0)  # pushes objects out of frame
    image, target = ToyCityDataset(1, height=64, width=128)[0]
    _, out = zoom_in(image, target)
    n = len(out["labels"])
    assert n < len(target["labels"])
    for key in ("boxes", "masks", "amodal_masks", "occlusion", "area", "iscrowd", "depth"):
        assert len(out[key]) == n, key


def test_clip_frames_keep_track_ids_aligned_when_instances_leave_the_frame():
    from course_lib.data.toycity import clip, to_tv_tensors

    torch.manual_seed(0)
    image, target = to_tv_tensors(*clip(seed=1, num_frames=1, height=64, width=128)[0])
    _, out = train_transforms(scale_range=(2.0, 2.0), max_rotation=20.0)(image, target)
    assert len(out["track_ids"]) == len(out["labels"]) < len(target["labels"])
    kept = [target["track_ids"].tolist().index(t) for t in out["track_ids"].tolist()]
    assert out["labels"].tolist() == [target["labels"][i].item() for i in kept]


def generated_masks(seed: int) -> torch.Tensor:
    """[N, H, W] uint8 masks of random odd and even sizes: random blobs, plus an empty mask, a single
    pixel, a single row, a single column and a full mask, each at a random place."""
    g = torch.Generator().manual_seed(seed)
    h, w = (int(v) for v in torch.randint(1, 40, (2,), generator=g))
    masks = (torch.rand(8, h, w, generator=g) > torch.rand(8, 1, 1, generator=g)).to(torch.uint8)
    y, x = int(torch.randint(h, (1,), generator=g)), int(torch.randint(w, (1,), generator=g))
    masks[0] = 0
    masks[1] = 0
    masks[1, y, x] = 1
    masks[2] = 0
    masks[2, y] = 1
    masks[3] = 0
    masks[3, :, x] = 1
    masks[4] = 1
    return masks[torch.randperm(8, generator=g)]


def numpy_tight_boxes(masks: torch.Tensor) -> torch.Tensor:
    """The definition, mask by mask: [first column, first row, last column + 1, last row + 1]; zeros if empty."""
    boxes = []
    for mask in masks.numpy():
        ys, xs = mask.nonzero()
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, 0, 0])
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


@pytest.mark.parametrize("seed", range(20))
def test_boxes_from_masks_on_generated_masks_with_empty_ones(seed):
    masks = generated_masks(seed)
    boxes = boxes_from_masks(tv_tensors.Mask(masks))
    assert boxes.dtype == torch.float32
    assert torch.equal(boxes, numpy_tight_boxes(masks))
    filled = masks.bool().flatten(1).any(dim=1)
    assert torch.equal(boxes[filled], masks_to_boxes(masks[filled]) + torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert torch.equal(boxes_from_masks(masks.bool()), boxes)


@pytest.mark.parametrize("shape", [(0, 5, 7), (0, 0, 0), (2, 0, 3), (3, 1, 1)])
def test_boxes_from_masks_of_degenerate_shapes_are_zero_boxes(shape):
    assert torch.equal(boxes_from_masks(torch.zeros(shape, dtype=torch.uint8)), torch.zeros(shape[0], 4))
