"""ToyCity exporters, each checked by the field's own reader: pycocotools and cityscapesscripts."""

import json

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.annotation import Annotation
from cityscapesscripts.helpers.labels import id2label
from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course_lib.data.cityscapes import CityscapesInstances, read_instance_ids
from course_lib.data.toycity import scene
from course_lib.data.toycity.export import write_cityscapes, write_coco

SIZE = dict(height=128, width=256)


@pytest.fixture(scope="module")
def samples():
    return [scene(seed, **SIZE, semantic=True) for seed in range(5)]


def evaluate_perfect_prediction(coco: COCO, iou_type: str) -> float:
    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
         **({"segmentation": a["segmentation"]} if iou_type == "segm" else {"bbox": a["bbox"]})}
        for a in coco.dataset["annotations"]
    ]
    evaluator = COCOeval(coco, coco.loadRes(results), iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats[0]


def test_coco_export_gives_ap_one_for_the_ground_truth_itself(tmp_path, samples):
    path = write_coco(tmp_path, "val", samples)
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == len(samples)
    assert len(coco.getAnnIds()) == sum(len(t["labels"]) for _, t in samples)
    assert evaluate_perfect_prediction(coco, "segm") == 1.0
    assert evaluate_perfect_prediction(coco, "bbox") == 1.0
    for (_, target), image_id in zip(samples, sorted(coco.getImgIds())):
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        masks = np.stack([coco.annToMask(a) for a in annotations])
        assert np.array_equal(masks, target["masks"].numpy())
        assert (tmp_path / "val" / coco.imgs[image_id]["file_name"]).is_file()


def test_coco_export_rejects_repeated_image_ids(tmp_path, samples):
    with pytest.raises(ValueError, match="image_id"):
        write_coco(tmp_path, "val", [samples[0], samples[0]])


def test_cityscapes_export_reads_back_as_the_same_instances(tmp_path, samples):
    write_cityscapes(tmp_path, "val", samples)
    data = CityscapesInstances(tmp_path, split="val")
    assert [p.name for p, _ in data.files] == [f"toycity_{i:06d}_000000_leftImg8bit.png" for i in range(len(samples))]
    for (image, target), (read_image, read_target) in zip(samples, data):
        assert torch.equal((read_image * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(image))
        # the reader returns instances sorted by id value; compare as sets of (label, mask)
        ours = sorted(zip(target["labels"].tolist(), map(bytes, target["masks"].numpy())))
        theirs = sorted(zip(read_target["labels"].tolist(), map(bytes, read_target["masks"].numpy())))
        assert ours == theirs


def test_cityscapes_groups_are_plain_label_ids_and_crowds_for_the_reader(tmp_path, samples):
    group_area = 400
    write_cityscapes(tmp_path, "train", samples, group_area=group_area)
    small = sum(int((t["area"] < group_area).sum()) for _, t in samples)
    large = sum(int((t["area"] >= group_area).sum()) for _, t in samples)
    assert small > 0 and large > 0
    crowded = [t for _, t in CityscapesInstances(tmp_path, split="train", crowd=True)]
    plain = [t for _, t in CityscapesInstances(tmp_path, split="train")]
    assert sum(len(t["labels"]) for t in plain) == large
    assert sum(int(t["iscrowd"].sum()) for t in crowded) > 0  # one group region per class and image
    labels = [o["label"] for path in (tmp_path / "gtFine" / "train").glob("*/*_polygons.json")
              for o in json.loads(path.read_text())["objects"]]
    assert any(label.endswith("group") for label in labels)


def test_cityscapes_label_ids_and_polygons_agree_with_the_instance_ids(tmp_path, samples):
    write_cityscapes(tmp_path, "val", samples, sequence=7)
    gt_dir = tmp_path / "gtFine" / "val" / "toycity"
    for frame, (_, target) in enumerate(samples):
        stem = gt_dir / f"toycity_000007_{frame:06d}_gtFine"
        ids = read_instance_ids(stem.with_name(stem.name + "_instanceIds.png"))
        label_ids = read_instance_ids(stem.with_name(stem.name + "_labelIds.png"))
        assert np.array_equal(np.where(ids >= 1000, ids // 1000, ids), label_ids)
        assert np.array_equal(label_ids, target["semantic"].numpy())
        with Image.open(stem.with_name(stem.name + "_color.png")) as colour:
            assert colour.mode == "RGBA"
            rgb = np.asarray(colour)[..., :3]
        for label_id in np.unique(label_ids):
            assert (rgb[label_ids == label_id] == id2label[int(label_id)].color).all()
        annotation = Annotation()
        annotation.fromJsonFile(str(stem.with_name(stem.name + "_polygons.json")))
        drawn = np.asarray(createInstanceImage(annotation, "ids"))
        # polygons are outer outlines drawn far to near: exact but for holes (bicycle wheels)
        assert (drawn == ids).mean() > 0.95


def test_cityscapes_export_needs_semantic_targets(tmp_path):
    with pytest.raises(ValueError, match="semantic=True"):
        write_cityscapes(tmp_path, "val", [scene(0, **SIZE)])
