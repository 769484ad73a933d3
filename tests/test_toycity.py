"""ToyCity scenes: determinism, exact and self-consistent ground truth, options, Dataset wrapper."""

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from cityscapesscripts.helpers.labels import name2label
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms import v2

from course_lib.classes import CLASS_TO_INDEX, CLASSES, INDEX_TO_CITYSCAPES_ID, NUM_CLASSES
from course_lib.data.toycity import MAX_OCCLUSION, MIN_VISIBLE_AREA, ToyCityDataset, scene
from course_lib.structures.instances import boxes_from_masks

SIZE = dict(height=128, width=256)
SEEDS = range(12)


@pytest.fixture(scope="module")
def scenes():
    return [scene(seed, **SIZE) for seed in SEEDS]


def test_same_seed_same_scene_and_different_seed_different_scene():
    image_a, target_a = scene(7, **SIZE)
    image_b, target_b = scene(7, **SIZE)
    assert np.array_equal(image_a, image_b)
    assert target_a.keys() == target_b.keys()
    for key in target_a:
        assert torch.equal(target_a[key], target_b[key]), key
    assert not np.array_equal(image_a, scene(8, **SIZE)[0])


def test_types_and_shapes(scenes):
    for image, target in scenes:
        n = len(target["labels"])
        assert image.dtype == np.uint8 and image.shape == (128, 256, 3)
        assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (n, 4)
        assert target["labels"].dtype == torch.int64
        assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (n, 128, 256)
        assert target["amodal_masks"].shape == (n, 128, 256)
        assert target["occlusion"].dtype == torch.float32 and target["area"].dtype == torch.float32
        assert target["iscrowd"].dtype == torch.int64 and not target["iscrowd"].any()
        assert target["image_id"].dtype == torch.int64 and target["image_id"].ndim == 0
        assert ((target["labels"] >= 1) & (target["labels"] < NUM_CLASSES)).all()
    assert sum(len(t["labels"]) for _, t in scenes) > 3 * len(scenes)  # scenes are not empty


def test_boxes_are_tight_pixel_edge_boxes_of_the_visible_masks(scenes):
    for _, target in scenes:
        masks = target["masks"]
        if len(masks) == 0:
            continue
        inclusive = masks_to_boxes(masks.bool())
        assert torch.equal(target["boxes"], inclusive + torch.tensor([0.0, 0.0, 1.0, 1.0]))
        rles = mask_utils.encode(np.asfortranarray(masks.permute(1, 2, 0).numpy()))
        coco = torch.from_numpy(mask_utils.toBbox(rles)).float()  # [x, y, w, h]
        assert torch.equal(coco, torch.cat([target["boxes"][:, :2], target["boxes"][:, 2:] - target["boxes"][:, :2]], 1))


def test_visible_masks_are_disjoint_and_inside_the_amodal_masks(scenes):
    for _, target in scenes:
        masks, amodal = target["masks"], target["amodal_masks"]
        assert masks.sum(0).max() <= 1
        assert not (masks.bool() & ~amodal.bool()).any()


def test_occlusion_and_area_follow_from_the_masks(scenes):
    occluded = 0
    for _, target in scenes:
        visible = target["masks"].flatten(1).sum(1).float()
        amodal = target["amodal_masks"].flatten(1).sum(1).float()
        assert torch.equal(target["area"], visible)
        assert torch.allclose(target["occlusion"], 1 - visible / amodal)
        assert (target["occlusion"] <= MAX_OCCLUSION).all() and (visible >= MIN_VISIBLE_AREA).all()
        occluded += int((target["occlusion"] > 0.05).sum())
    assert occluded > 0  # the scenes do contain occlusion


def test_classes_option_restricts_the_labels():
    labels = torch.cat([scene(s, **SIZE, classes=["car", "bus"])[1]["labels"] for s in range(6)])
    assert set(labels.tolist()) <= {CLASS_TO_INDEX["car"], CLASS_TO_INDEX["bus"]} and len(labels) > 0
    # a rider brings its bicycle along as a second instance
    rider_scene = scene(0, **SIZE, classes=["rider", "bicycle"], num_objects=3, occlusion=0.0)[1]
    assert CLASS_TO_INDEX["rider"] in rider_scene["labels"].tolist()


@pytest.mark.parametrize("name", [c for c in CLASSES if c != "__background__"])
def test_every_class_can_be_drawn_alone(name):
    labels = torch.cat([scene(s, **SIZE, classes=[name], num_objects=4)[1]["labels"] for s in range(3)])
    assert len(labels) > 0 and (labels == CLASS_TO_INDEX[name]).all()


def test_semantic_map_holds_each_instance_class_and_the_street():
    _, target = scene(4, **SIZE, semantic=True)
    semantic = target["semantic"]
    for mask, label in zip(target["masks"].bool(), target["labels"].tolist()):
        assert (semantic[mask] == INDEX_TO_CITYSCAPES_ID[label]).all()
    street = {name2label[n].id for n in ("road", "sidewalk", "building")}
    assert street <= set(semantic.unique().tolist())


def test_small_share_and_occlusion_options_act_in_the_right_direction():
    def mean_of(key, **options):
        targets = [scene(s, **SIZE, num_objects=10, **options)[1] for s in range(8)]
        return torch.cat([t[key] for t in targets]).mean().item()

    assert mean_of("area", small_share=1.0) < mean_of("area", small_share=0.0)
    assert mean_of("occlusion", occlusion=1.0) > mean_of("occlusion", occlusion=0.0)


@pytest.mark.parametrize(
    "options, message",
    [(dict(occlusion=1.5), "occlusion"), (dict(classes=["dog"]), "classes"), (dict(height=10), "64x64"),
     (dict(num_objects=-1), "num_objects")],
)
def test_bad_options_say_what_is_wrong(options, message):
    with pytest.raises(ValueError, match=message):
        scene(0, **{**SIZE, **options})


def test_dataset_items_are_tv_tensors_matching_the_scene():
    data = ToyCityDataset(3, seed=5, **SIZE)
    image, target = data[1]
    ref_image, ref_target = scene(6, **SIZE)
    assert len(data) == 3
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.float32 and image.shape == (3, 128, 256)
    assert torch.allclose(image, torch.from_numpy(ref_image).permute(2, 0, 1).float() / 255)
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].canvas_size == (128, 256)
    assert isinstance(target["masks"], tv_tensors.Mask)
    assert torch.equal(target["labels"], ref_target["labels"])
    with pytest.raises(IndexError):
        data[3]


def test_dataset_transforms_move_boxes_with_masks():
    image, target = ToyCityDataset(1, seed=2, transforms=v2.RandomHorizontalFlip(p=1.0), **SIZE)[0]
    assert torch.equal(target["boxes"].as_subclass(torch.Tensor), boxes_from_masks(target["masks"]))
    assert torch.equal(target["masks"], scene(2, **SIZE)[1]["masks"].flip(-1))


def test_held_out_split_starts_at_the_held_out_seed_far_from_training_seeds():
    from course_lib.data.toycity import HELD_OUT_SEED, held_out

    assert HELD_OUT_SEED == 1_000_000  # the seed every committed ToyCity result was evaluated on
    split = held_out(3, 64, 128)
    assert (len(split), split.seed, split.height, split.width) == (3, HELD_OUT_SEED, 64, 128)
