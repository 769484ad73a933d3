"""course_lib.data.catalog: the Cityscapes reader on a fixture written in the exact Cityscapes layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from course_lib.classes import CLASS_TO_INDEX
from course_lib.data.cityscapes import CityscapesInstances, read_instance_ids
from course_lib.structures.instances import collate

H, W = 32, 64
# Cityscapes label ids, from cityscapesscripts' label table.
ROAD, CAR, PERSON, CARAVAN = 7, 26, 24, 29


def write_cityscapes_frame(root: Path, split: str, city: str, frame: str, ids: np.ndarray) -> None:
    """One frame in the official layout: leftImg8bit RGB PNG + 16-bit gtFine instanceIds PNG."""
    image_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
    image_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    rgb = (np.arange(H * W * 3) % 251).reshape(H, W, 3).astype(np.uint8)
    Image.fromarray(rgb).save(image_dir / f"{city}_{frame}_leftImg8bit.png")
    # Pillow 13 cannot write mode I as PNG: a uint16 array becomes mode I;16, as in the real files.
    Image.fromarray(ids.astype(np.uint16)).save(gt_dir / f"{city}_{frame}_gtFine_instanceIds.png")


def fixture_ids() -> np.ndarray:
    """Road everywhere; two cars, one person, a car *group* (plain id 26) and a caravan instance."""
    ids = np.full((H, W), ROAD, dtype=np.int64)
    ids[2:10, 4:20] = CAR * 1000 + 0
    ids[12:30, 4:12] = CAR * 1000 + 1
    ids[5:25, 30:36] = PERSON * 1000 + 0
    ids[20:30, 40:60] = CAR  # cargroup: a crowd region, not an instance
    ids[0:8, 44:60] = CARAVAN * 1000 + 0  # caravan: ignored in the official evaluation
    return ids


@pytest.fixture
def cityscapes_root(tmp_path: Path) -> Path:
    write_cityscapes_frame(tmp_path, "val", "frankfurt", "000000_000294", fixture_ids())
    write_cityscapes_frame(tmp_path, "val", "lindau", "000001_000019", np.full((H, W), ROAD))
    return tmp_path


def test_instance_png_round_trips_as_16_bit(cityscapes_root: Path):
    gt = cityscapes_root / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_instanceIds.png"
    assert (read_instance_ids(gt) == fixture_ids()).all()


def test_reads_instances_and_drops_group_and_ignored_class(cityscapes_root: Path):
    dataset = CityscapesInstances(cityscapes_root, split="val")
    assert len(dataset) == 2 and dataset.files[0][0].name == "frankfurt_000000_000294_leftImg8bit.png"
    image, target = dataset[0]
    assert image.shape == (3, H, W) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    expected = fixture_ids()
    # torch.unique sorts ids: person 24000 before cars 26000, 26001.
    assert target["labels"].tolist() == [CLASS_TO_INDEX["person"], CLASS_TO_INDEX["car"], CLASS_TO_INDEX["car"]]
    for mask, value in zip(target["masks"], (24000, 26000, 26001)):
        assert (mask.numpy() == (expected == value)).all()
    assert target["boxes"].tolist() == [[30, 5, 36, 25], [4, 2, 20, 10], [4, 12, 12, 30]]
    assert target["area"].tolist() == [120, 128, 144]
    assert target["iscrowd"].tolist() == [0, 0, 0]
    assert tuple(target["boxes"].canvas_size) == (H, W)

    _, empty = dataset[1]
    assert empty["masks"].shape == (0, H, W) and empty["boxes"].shape == (0, 4)
    # repeat-factor sampling reads the same labels from the id PNG alone
    assert dataset.image_labels(0) == target["labels"].tolist() and dataset.image_labels(1) == []


def test_group_region_as_crowd_when_asked(cityscapes_root: Path):
    dataset = CityscapesInstances(cityscapes_root, split="val", crowd=True)
    _, target = dataset[0]
    assert dataset.image_labels(0) == target["labels"].tolist()
    crowd = target["iscrowd"].bool()
    assert crowd.sum() == 1 and target["labels"][crowd].item() == CLASS_TO_INDEX["car"]
    assert (target["masks"][crowd][0].numpy() == (fixture_ids() == CAR)).all()


def test_downscaling_keeps_ids_unblended(cityscapes_root: Path):
    image, target = CityscapesInstances(cityscapes_root, split="val", scale=0.5)[0]
    assert image.shape == (3, H // 2, W // 2) and target["masks"].shape == (3, H // 2, W // 2)
    assert (target["masks"].sum(dim=0) <= 1).all()  # nearest resampling: no pixel in two instances
    assert target["area"].tolist() == [30, 32, 36]  # each instance's rectangle at half size


def test_collate_keeps_lists_for_a_dataloader(cityscapes_root: Path):
    images, targets = next(iter(DataLoader(CityscapesInstances(cityscapes_root, "val"), batch_size=2, collate_fn=collate)))
    assert len(images) == len(targets) == 2 and targets[1]["image_id"] == 1


def test_missing_folders_and_files_are_named_with_the_download_command(cityscapes_root: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"gtFine.train.*gtFine_trainvaltest.zip.*download_cityscapes.py"):
        (cityscapes_root / "leftImg8bit" / "train" / "x").mkdir(parents=True)
        CityscapesInstances(cityscapes_root, split="train")
    (cityscapes_root / "gtFine/val/lindau/lindau_000001_000019_gtFine_instanceIds.png").unlink()
    with pytest.raises(FileNotFoundError, match="missing file .*lindau_000001_000019_gtFine_instanceIds.png"):
        CityscapesInstances(cityscapes_root, split="val")


def test_no_root_and_no_environment_says_how_to_get_cityscapes(monkeypatch):
    monkeypatch.delenv("CITYSCAPES_DATASET", raising=False)
    with pytest.raises(FileNotFoundError, match="CITYSCAPES_DATASET.*download_cityscapes.py"):
        CityscapesInstances()


# ---------------------------------------------------------------------------------------------
# COCO subset: data_scripts/download_coco.py (its server offline), read by CocoUrbanSubset
# ---------------------------------------------------------------------------------------------

def coco_fixture(base_url: str = "http://images.cocodataset.org/val2017") -> dict:
    """Image 1: person + car + dog; image 2: only a dog; image 3: a crowd of people + a bus."""
    def image(i: int) -> dict:
        return {"id": i, "file_name": f"{i:012d}.jpg", "height": H, "width": W, "coco_url": f"{base_url}/{i:012d}.jpg"}

    def polygon(i: int, image_id: int, category: int, x0: int, y0: int, x1: int, y1: int) -> dict:
        return {"id": i, "image_id": image_id, "category_id": category, "iscrowd": 0, "area": float((x1 - x0) * (y1 - y0)),
                "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]}

    crowd_rle = {"size": [H, W], "counts": [40 * H, 10 * H, (W - 50) * H]}  # column-major: columns 40..49
    return {
        "images": [image(1), image(2), image(3)],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 6, "name": "bus"}, {"id": 18, "name": "dog"}],
        "annotations": [
            polygon(1, 1, 1, 2, 2, 12, 30), polygon(2, 1, 3, 20, 10, 50, 25), polygon(3, 1, 18, 52, 2, 60, 10),
            polygon(4, 2, 18, 5, 5, 20, 20),
            {"id": 5, "image_id": 3, "category_id": 1, "iscrowd": 1, "area": 10.0 * H, "bbox": [40, 0, 10, H],
             "segmentation": crowd_rle},
            polygon(6, 3, 6, 2, 2, 30, 20),
        ],
    }


def coco_server_files(folder: Path, script, instances: dict) -> dict[str, Path]:
    """The files images.cocodataset.org would serve for ``instances``, written to ``folder`` and keyed by
    the URLs ``script`` (data_scripts/download_coco.py) asks for; ``script``'s MD5 set to the archive's."""
    import hashlib
    import json
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "annotations.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(script.INSTANCES_MEMBER, json.dumps(instances))
    script.ANNOTATIONS_MD5 = hashlib.md5(archive.read_bytes()).hexdigest()
    served = {script.ANNOTATIONS_URL: archive}
    for i in (1, 2, 3):
        Image.fromarray(np.full((H, W, 3), 40 * i, dtype=np.uint8)).save(folder / f"{i:012d}.jpg")
        served[f"https://images.cocodataset.org/val2017/{i:012d}.jpg"] = folder / f"{i:012d}.jpg"
    return served


def test_download_coco_builds_a_subset_that_coco_urban_subset_reads(tmp_path: Path, monkeypatch, data_script):
    from standins import serve_offline

    script = data_script("download_coco")
    asked = serve_offline(monkeypatch, script, coco_server_files(tmp_path / "server", script, coco_fixture()))
    dest = tmp_path / "coco"
    assert script.main(["--dest", str(dest)]) == 0
    assert asked == [script.ANNOTATIONS_URL, "https://images.cocodataset.org/val2017/000000000001.jpg",
                     "https://images.cocodataset.org/val2017/000000000003.jpg"]

    assert sorted(p.name for p in (dest / "val2017").iterdir()) == ["000000000001.jpg", "000000000003.jpg"]
    from course_lib.data.coco_urban import CocoUrbanSubset

    dataset = CocoUrbanSubset(dest)
    assert dataset.image_ids == [1, 3]
    image, target = dataset[0]
    assert image.shape == (3, H, W)
    assert target["labels"].tolist() == [CLASS_TO_INDEX["person"], CLASS_TO_INDEX["car"]]  # the dog is dropped
    assert target["boxes"].tolist() == [[2, 2, 12, 30], [20, 10, 50, 25]]  # the rectangles of the polygons
    _, target = dataset[1]
    assert target["labels"].tolist() == [CLASS_TO_INDEX["bus"]] and target["iscrowd"].tolist() == [0]
    assert [dataset.image_labels(i) for i in (0, 1)] == [[CLASS_TO_INDEX["person"], CLASS_TO_INDEX["car"]], [CLASS_TO_INDEX["bus"]]]
    with_crowds = CocoUrbanSubset(dest, crowd=True)
    _, with_crowd = with_crowds[1]
    assert with_crowds.image_labels(1) == with_crowd["labels"].tolist()
    assert with_crowd["iscrowd"].tolist() == [1, 0] and with_crowd["area"][0].item() == 10 * H
