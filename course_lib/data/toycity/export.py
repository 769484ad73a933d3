"""Writing ToyCity (or any ``(image, target)`` pairs) in the files of the field's datasets.

* COCO: ``{root}/{split}/{image_id:06d}.png`` and ``{root}/annotations/instances_{split}.json``
  with RLE masks (pycocotools). Category ids are the course's class indices (1..8), because
  "rider" has no COCO category; ``bbox`` is ``[x, y, w, h]`` of the pixel-edge box, which equals
  ``pycocotools.mask.toBbox`` of the mask. Each annotation also carries ``occlusion`` and, in
  the same RLE form, ``amodal_segmentation``.
* Cityscapes: the exact ``leftImg8bit``/``gtFine`` layout, with ``*_gtFine_instanceIds.png``
  (uint16: label id * 1000 + k for instances, the plain label id for stuff and for groups),
  ``*_gtFine_labelIds.png`` (uint8), ``*_gtFine_color.png`` (RGBA, the label table's colours)
  and ``*_gtFine_polygons.json``, using cityscapesscripts' label table. Needs targets made with
  ``semantic=True``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import labels as cityscapes_labels

from course_lib.classes import CLASSES, INDEX_TO_CITYSCAPES_ID
from course_lib.structures.masks import encode_rle

Sample = tuple[np.ndarray, dict]


def color_table() -> np.ndarray:
    """Cityscapes label id -> its colour in ``*_gtFine_color.png``: uint8 [256, 4], BGRA for OpenCV."""
    table = np.zeros((256, 4), np.uint8)
    for label in cityscapes_labels:
        if label.id >= 0:  # "license plate" has id -1 and no pixels in gtFine
            table[label.id] = (*label.color[::-1], 255)
    return table


COLOR_TABLE = color_table()


def coco_annotations(target: dict, first_id: int) -> list[dict]:
    """COCO annotation dicts of one target; annotation ids count up from ``first_id``."""
    image_id = int(target["image_id"])
    boxes = target["boxes"].tolist()
    amodal = encode_rle(target["amodal_masks"]) if "amodal_masks" in target else [None] * len(boxes)
    annotations = []
    for i, (rle, box) in enumerate(zip(encode_rle(target["masks"]), boxes)):
        annotation = {
            "id": first_id + i,
            "image_id": image_id,
            "category_id": int(target["labels"][i]),
            "segmentation": rle,
            "area": float(target["area"][i]),
            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
            "iscrowd": int(target["iscrowd"][i]),
        }
        if amodal[i] is not None:
            annotation["amodal_segmentation"] = amodal[i]
            annotation["occlusion"] = float(target["occlusion"][i])
        annotations.append(annotation)
    return annotations


def write_coco(root: str | Path, split: str, samples: Iterable[Sample]) -> Path:
    """Write images and a COCO instances JSON for ``samples``; return the JSON's path.

    ``samples`` are ``(image uint8 [H, W, 3], target)`` pairs such as :func:`~course_lib.data.toycity.scene.scene` returns;
    their ``image_id`` values must be distinct.
    """
    root = Path(root)
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    images, annotations, seen = [], [], set()
    for image, target in samples:
        image_id = int(target["image_id"])
        if image_id in seen:
            raise ValueError(f"image_id {image_id} appears twice; give every sample its own image_id (scene seed).")
        seen.add(image_id)
        file_name = f"{image_id:06d}.png"
        cv2.imwrite(str(root / split / file_name), image[:, :, ::-1])
        images.append({"id": image_id, "file_name": file_name, "height": image.shape[0], "width": image.shape[1]})
        annotations += coco_annotations(target, first_id=len(annotations) + 1)
    categories = [{"id": i, "name": name, "supercategory": "human" if name in ("person", "rider") else "vehicle"}
                  for i, name in enumerate(CLASSES) if i > 0]
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def instance_ids(target: dict, group_area: int = 0) -> np.ndarray:
    """The Cityscapes instance id map, uint16 [H, W], of a target made with ``semantic=True``.

    Instances get ``label id * 1000 + k`` (k counts from 0 per class, in target order); pixels of
    stuff, of objects not in the target, and of instances smaller than ``group_area`` pixels
    (written as ``<class>group`` regions, as Cityscapes does for crowds) keep the plain label id.
    """
    if "semantic" not in target:
        raise ValueError("this target has no 'semantic' map: make it with scene(..., semantic=True) or clip(..., semantic=True).")
    ids = target["semantic"].numpy().astype(np.uint16)
    counts: dict[int, int] = {}
    for mask, label, area in zip(target["masks"], target["labels"].tolist(), target["area"].tolist()):
        if area < group_area:
            continue
        label_id = INDEX_TO_CITYSCAPES_ID[label]
        k = counts.get(label_id, 0)
        counts[label_id] = k + 1
        ids[mask.numpy().astype(bool)] = label_id * 1000 + k
    return ids


def polygons_json(target: dict, group_area: int = 0) -> dict:
    """``*_gtFine_polygons.json`` content: the target's outlines, in paint order (see ``scene.paint_outlines``)."""
    height, width = target["semantic"].shape
    objects = []
    for entry in target["outlines"]:
        label = entry["label"]
        if entry["instance"] >= 0 and float(target["area"][entry["instance"]]) < group_area:
            label += "group"
        objects.append({"label": label, "polygon": entry["polygon"]})
    return {"imgHeight": int(height), "imgWidth": int(width), "objects": objects}


def write_cityscapes(
    root: str | Path, split: str, samples: Iterable[Sample], *, city: str = "toycity", sequence: int | None = None,
    group_area: int = 0,
) -> list[Path]:
    """Write samples in the Cityscapes layout; return the ``*_leftImg8bit.png`` paths.

    Files are named ``{city}_{sequence:06d}_{frame:06d}``: with ``sequence=None`` every sample is
    its own sequence numbered by its ``image_id`` (frame 0, independent scenes); otherwise all
    samples are frames of ``sequence`` numbered by ``image_id`` (a clip). Instances smaller than
    ``group_area`` pixels become ``<class>group`` regions (see :func:`instance_ids`).
    """
    root = Path(root)
    image_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
    image_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for image, target in samples:
        image_id = int(target["image_id"])
        stem = f"{city}_{image_id:06d}_{0:06d}" if sequence is None else f"{city}_{sequence:06d}_{image_id:06d}"
        ids = instance_ids(target, group_area)
        cv2.imwrite(str(image_dir / f"{stem}_leftImg8bit.png"), image[:, :, ::-1])
        cv2.imwrite(str(gt_dir / f"{stem}_gtFine_instanceIds.png"), ids)
        label_ids = target["semantic"].numpy()
        cv2.imwrite(str(gt_dir / f"{stem}_gtFine_labelIds.png"), label_ids)
        cv2.imwrite(str(gt_dir / f"{stem}_gtFine_color.png"), COLOR_TABLE[label_ids])
        (gt_dir / f"{stem}_gtFine_polygons.json").write_text(json.dumps(polygons_json(target, group_area)))
        written.append(image_dir / f"{stem}_leftImg8bit.png")
    return written

