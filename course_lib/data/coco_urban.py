"""A COCO subset of the course's classes in torchvision's detection format."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torchvision import tv_tensors

from course_lib.classes import CLASS_TO_INDEX, COCO_CATEGORY_ID
from course_lib.data.augment import Transforms
from course_lib.data.images import read_rgb
from course_lib.errors import BadInput, MissingData
from course_lib.structures.instances import make_target

DOWNLOAD_COCO = "python data_scripts/download_coco.py --dest {root}"

#: The keys the reader uses of each entry of a COCO instances file's lists.
REQUIRED_KEYS = {"images": ("id", "file_name", "height", "width"),
                 "annotations": ("id", "image_id", "category_id", "iscrowd", "bbox", "segmentation")}


#: COCO category id -> course class index ("rider" has no COCO category).
COCO_TO_INDEX = {coco_id: CLASS_TO_INDEX[name] for name, coco_id in COCO_CATEGORY_ID.items()}


def coco_urban_subset(instances: dict, max_images: int | None = None) -> dict:
    """A COCO instances dict cut down to the images holding a non-crowd person or vehicle.

    Keeps the first ``max_images`` such images by id (deterministic), all their annotations and
    every category, so the result is again a valid COCO instances file.
    """
    wanted = {a["image_id"] for a in instances["annotations"] if a["category_id"] in COCO_TO_INDEX and not a["iscrowd"]}
    image_ids = sorted(wanted)[:max_images]
    keep = set(image_ids)
    return {
        **{k: v for k, v in instances.items() if k not in ("images", "annotations")},
        "images": sorted((image for image in instances["images"] if image["id"] in keep), key=lambda i: i["id"]),
        "annotations": [a for a in instances["annotations"] if a["image_id"] in keep],
    }


def relative_file_name(file_name: object, source: str) -> str:
    """A COCO ``file_name`` as a ``/``-separated path that stays inside the images folder;
    :class:`BadInput` for an absolute path, a drive (``C:``), a ``..`` part or no name at all (a
    careless or tampered annotation file would otherwise make the reader, or the downloader's
    writes, reach anywhere on the disk). Backslashes count as separators, as on Windows. String
    tests, not ``pathlib``: train2017 has 118k names."""
    text = str(file_name)
    name = text.replace("\\", "/")
    parts = name.split("/")
    if name.startswith("/") or name[1:2] == ":" or ".." in parts or "\0" in name or all(p in ("", ".") for p in parts):
        raise BadInput(f"{source}: file_name {text!r} is not a file name inside the images folder (an absolute path, "
                       "'..' or empty); a COCO file_name is relative to it, e.g. '000000000139.jpg': fix or re-download the file")
    return name


def check_instances(instances: object, source: str) -> None:
    """Raise :class:`BadInput` (one line naming ``source`` and the entry) unless ``instances`` has
    ``images`` and ``annotations`` lists whose entries carry :data:`REQUIRED_KEYS`, unique image ids
    and file names inside the images folder (:func:`relative_file_name`).

    pycocotools keeps the last of two images with one id, so one image would be dropped and the
    other's annotations counted twice; a missing key would be a ``KeyError`` deep in training.
    """
    if not isinstance(instances, dict):
        raise BadInput(f"{source}: not a COCO instances file (its JSON is not an object with 'images' and 'annotations')")
    for section, keys in REQUIRED_KEYS.items():
        entries, required = instances.get(section), set(keys)
        if not isinstance(entries, list):
            raise BadInput(f"{source}: no '{section}' list; a COCO instances file has 'images', 'annotations' and 'categories'")
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict) or not entry.keys() >= required:  # a set test: train2017 has 860k annotations
                missing = next(key for key in keys if not isinstance(entry, dict) or key not in entry)
                raise BadInput(f"{source}: {section}[{position}] has no '{missing}' (each entry needs {', '.join(keys)})")
    seen: set = set()
    for image in instances["images"]:
        if image["id"] in seen:
            raise BadInput(f"{source}: image id {image['id']} appears twice in 'images'; each image needs its own id")
        seen.add(image["id"])
        relative_file_name(image["file_name"], source)


def read_instances(ann_file: Path) -> dict:
    """The checked (:func:`check_instances`) contents of a COCO instances JSON file."""
    try:
        instances = json.loads(ann_file.read_bytes())
    except (UnicodeDecodeError, ValueError) as error:
        raise BadInput(f"{ann_file}: not valid JSON ({error}); download or export the annotation file again") from None
    check_instances(instances, str(ann_file))
    return instances


class CocoUrbanSubset(torch.utils.data.Dataset):
    """COCO images holding at least one person or vehicle, with only those annotations kept.

    ``root`` holds ``{split}/`` images and, under ``annotations/``, either the subset file
    ``urban_{split}.json`` written by ``data_scripts/download_coco.py`` or the official
    ``instances_{split}.json`` (the subset file wins; or pass ``ann_file``). Categories are mapped
    to course classes by :data:`COCO_TO_INDEX`; crowd annotations follow ``crowd`` as for Cityscapes.

    The annotation file is checked when the dataset is made (:func:`check_instances`); each image's
    size is checked against its ``height``/``width`` when the item is read, where the image is
    decoded anyway (an eager check would open every image file first). A wrong size would put every
    mask at the wrong scale, so perfect predictions would score AP 0.
    """

    def __init__(self, root: str | Path, split: str = "val2017", ann_file: str | Path | None = None,
                 transforms: Transforms | None = None, crowd: bool = False) -> None:
        from pycocotools.coco import COCO

        self.root = Path(root).expanduser()
        if ann_file is None:
            subset = self.root / "annotations" / f"urban_{split}.json"
            ann_file = subset if subset.is_file() else self.root / "annotations" / f"instances_{split}.json"
        ann_file = Path(ann_file)
        if not ann_file.is_file():
            raise MissingData(f"missing COCO annotation file {ann_file}; run: {DOWNLOAD_COCO.format(root=self.root)}")
        self.coco = COCO()
        self.coco.dataset = read_instances(ann_file)
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints a progress line
            self.coco.createIndex()
        self.images_dir = self.root / split
        self.transforms, self.crowd = transforms, crowd
        self.image_ids = [image["id"] for image in coco_urban_subset(self.coco.dataset)["images"]]
        if not self.image_ids:
            raise BadInput(f"{ann_file}: no image has a (non-crowd) annotation of COCO categories "
                           f"{sorted(COCO_TO_INDEX)} (person and vehicles): nothing to train on or evaluate")

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict]:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        path = self.images_dir / info["file_name"]  # kept inside images_dir by check_instances
        if not path.is_file():
            raise MissingData(f"missing COCO image {path}; run: {DOWNLOAD_COCO.format(root=self.root)}")
        image = read_rgb(path)
        if tuple(image.shape[-2:]) != (info["height"], info["width"]):
            raise BadInput(f"{path} is {image.shape[-1]}x{image.shape[-2]} pixels but its annotation says "
                           f"{info['width']}x{info['height']} (image id {image_id}): the annotations belong to another "
                           "version of the image; re-download or re-export the image and its annotation file together")
        annotations = self._annotations(image_id)
        arrays = [self.coco.annToMask(a) for a in annotations]
        for annotation, array in zip(annotations, arrays):  # an RLE carries its own size, which may be another
            if array.shape != (info["height"], info["width"]):
                raise BadInput(f"COCO annotation {annotation['id']} of image {image_id} is a {array.shape[1]}x{array.shape[0]} "
                               f"mask on a {info['width']}x{info['height']} image: its RLE 'size' must be [height, width] "
                               "of its image; export the annotations again")
        masks = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, info["height"], info["width"], dtype=torch.uint8)
        covers_pixels = masks.flatten(1).any(dim=1).tolist()  # a sliver can rasterise to no pixel at all
        if not all(covers_pixels):
            _warn_degenerate(image_id, covers_pixels.count(False))
            annotations = [a for a, keep in zip(annotations, covers_pixels) if keep]
            masks = masks[torch.tensor(covers_pixels, dtype=torch.bool)]
        labels = torch.tensor([COCO_TO_INDEX[a["category_id"]] for a in annotations], dtype=torch.int64)
        iscrowd = torch.tensor([a["iscrowd"] for a in annotations], dtype=torch.int64)
        target = make_target(masks, labels, iscrowd, image_id=image_id)
        return self.transforms(image, target) if self.transforms else (image, target)

    def _annotations(self, image_id: int) -> list[dict]:
        """The image's annotations of course classes (and crowds if ``crowd``) that cover an area
        (see :func:`usable_annotation`): a zero-area ground truth can never be matched, so it would
        turn a perfect prediction of its class into a miss."""
        wanted = [a for a in self.coco.imgToAnns[image_id]
                  if a["category_id"] in COCO_TO_INDEX and (self.crowd or not a["iscrowd"])]
        usable = [u for u in map(usable_annotation, wanted) if u is not None]
        if len(usable) < len(wanted):
            _warn_degenerate(image_id, len(wanted) - len(usable))
        return usable

    def image_labels(self, index: int) -> list[int]:
        """The class indices of item ``index``'s instances, from the annotations alone (for repeat factors)."""
        return [COCO_TO_INDEX[a["category_id"]] for a in self._annotations(self.image_ids[index])]


def usable_annotation(annotation: dict) -> dict | None:
    """A COCO annotation without its polygons of fewer than 3 points (pycocotools fails on them),
    or ``None`` if its box has no width or height or no polygon is left."""
    _, _, width, height = annotation["bbox"]
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, list):
        segmentation = [polygon for polygon in segmentation if len(polygon) >= 6]
        annotation = {**annotation, "segmentation": segmentation}
    return annotation if width > 0 and height > 0 and segmentation != [] else None


def _warn_degenerate(image_id: int, count: int) -> None:
    warnings.warn(f"COCO image {image_id}: skipped {count} annotation(s) without area (a zero-size box or polygon, "
                  "or a polygon of fewer than 3 points)", stacklevel=3)
