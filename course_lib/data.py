"""Datasets in torchvision's detection format: Cityscapes instances, a COCO urban subset, ToyCity.

Every dataset returns ``(image, target)`` with ``image`` a ``tv_tensors.Image`` float [3, H, W] in
[0, 1] and ``target`` a dict of

- ``boxes``: ``tv_tensors.BoundingBoxes`` [N, 4] XYXY in pixels, the tight box of each mask
  (``x2 = last column + 1``: a box covers whole pixels);
- ``masks``: ``tv_tensors.Mask`` [N, H, W] uint8 {0, 1};
- ``labels``: int64 [N], course class indices (:data:`course_lib.classes.CLASSES`);
- ``image_id``: int; ``area``: float32 [N] mask pixel counts; ``iscrowd``: int64 [N].

Crowd regions. Cityscapes labels a cluster of objects too tangled to separate as a *group*
(``cargroup``, ``persongroup``, ...): its pixels carry the plain label id (< 1000) instead of
``label id * 1000 + k``. The official instance evaluation (cityscapesscripts
``evalInstanceLevelSemanticLabeling``) never counts a group as an object to find, and does not
count a prediction lying mostly on a group (or on void) as a false positive. COCO's ``iscrowd=1``
regions play the same role in pycocotools. So with ``crowd=True`` groups come back as
``iscrowd=1`` entries, which :func:`course_lib.evaluate.coco_metrics` treats as ignore regions;
with the default ``crowd=False`` they are dropped, because torchvision's Mask R-CNN has no notion
of crowds and would learn a whole car park as one "car" (torchvision's reference training drops
COCO crowds for the same reason). Classes that are ignored in the evaluation (caravan, trailer)
and stuff classes are skipped.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms.v2 import functional as F

from course_lib.classes import CITYSCAPES_ID_TO_INDEX, CLASS_TO_INDEX, COCO_CATEGORY_ID
from course_lib.errors import BadInput, MissingData, UserError

Transforms = Callable[[tv_tensors.Image, dict], tuple[tv_tensors.Image, dict]]
DOWNLOAD_CITYSCAPES = "python data_scripts/download_cityscapes.py --dest {root}"
DOWNLOAD_COCO = "python data_scripts/download_coco.py --dest {root}"


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """[N, H, W] masks -> [N, 4] float XYXY tight boxes covering whole pixels (empty mask -> zeros)."""
    if masks.shape[0] == 0:
        return torch.zeros(0, 4)
    masks = masks.as_subclass(torch.Tensor).bool()
    boxes = masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    empty = ~masks.flatten(1).any(dim=1)
    boxes[empty] = 0.0  # masks_to_boxes gives nonsense for an empty mask; a zero box is sanitised later
    return boxes


def make_target(masks: torch.Tensor, labels: torch.Tensor, iscrowd: torch.Tensor, image_id: int) -> dict:
    """The target dict of the module docstring from [N, H, W] masks, [N] labels and [N] crowd flags."""
    masks = masks.to(torch.uint8)
    return {
        "boxes": tv_tensors.BoundingBoxes(boxes_from_masks(masks), format="XYXY", canvas_size=tuple(masks.shape[-2:])),
        "masks": tv_tensors.Mask(masks),
        "labels": labels.to(torch.int64),
        "image_id": image_id,
        "area": masks.flatten(1).sum(dim=1).to(torch.float32),
        "iscrowd": iscrowd.to(torch.int64),
    }


def collate(batch: Sequence[tuple]) -> tuple[list, list]:
    """DataLoader collate for detection: images differ in size, so keep lists instead of stacking."""
    images, targets = zip(*batch)
    return list(images), list(targets)


#: Pillow modes of 16-bit greyscale images: ``convert("RGB")`` would clip them to white.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


def _rgb(path: Path) -> tv_tensors.Image:
    """An image file -> tv_tensors.Image float [3, H, W] in [0, 1].

    A 16-bit greyscale image is scaled by 1/65535 (not clipped at 255); a truncated or unreadable
    file raises :class:`BadInput` instead of decoding partly grey.
    """
    try:
        with Image.open(path) as image:
            image.load()  # decodes now: a file cut short raises here instead of reading as grey
            if image.mode in SIXTEEN_BIT_MODES:
                grey = torch.from_numpy(np.asarray(image).astype(np.float32) / 65535)
                return tv_tensors.Image(grey.clamp(0, 1).expand(3, *grey.shape).contiguous())
            array = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:  # unidentified, truncated, broken PNG, huge
        raise BadInput(f"{path}: cannot read this image ({error}); copy or download it again") from None
    return tv_tensors.Image(torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255)


# ---------------------------------------------------------------------------------------------
# Cityscapes
# ---------------------------------------------------------------------------------------------

def cityscapes_pairs(root: str | Path | None, split: str) -> list[tuple[Path, Path]]:
    """Sorted (``*_leftImg8bit.png``, ``*_gtFine_instanceIds.png``) pairs of a split.

    Raises FileNotFoundError naming the missing folder or file and the download command.
    """
    if root is None:
        root = os.environ.get("CITYSCAPES_DATASET")
    if not root:
        raise MissingData(
            "Cityscapes location unknown: pass root=... or set CITYSCAPES_DATASET=/path/to/cityscapes. "
            "To get it (free account at cityscapes-dataset.com): " + DOWNLOAD_CITYSCAPES.format(root="/path/to/cityscapes")
        )
    root = Path(root).expanduser()
    command = DOWNLOAD_CITYSCAPES.format(root=root)
    images_dir, gt_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    for folder, package in ((images_dir, "leftImg8bit_trainvaltest.zip"), (gt_dir, "gtFine_trainvaltest.zip")):
        if not folder.is_dir():
            raise MissingData(f"missing folder {folder} (Cityscapes package {package}); run: {command}")
    images = sorted(images_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise MissingData(f"no */*_leftImg8bit.png under {images_dir} (a half-extracted download?); run: {command}")
    pairs = []
    for image in images:
        gt = gt_dir / image.parent.name / image.name.replace("_leftImg8bit.png", "_gtFine_instanceIds.png")
        if not gt.is_file():
            raise MissingData(f"missing file {gt} for image {image} (a half-extracted gtFine?); run: {command}")
        pairs.append((image, gt))
    return pairs


def read_instance_ids(path: Path) -> np.ndarray:
    """A ``*_instanceIds.png`` -> int32 [H, W] ids (label id * 1000 + k, or a plain label id)."""
    with Image.open(path) as image:  # 16-bit PNG: Pillow opens it as mode I;16 or I
        return np.asarray(image).astype(np.int32)


def class_of_id(value: int, crowd: bool) -> int | None:
    """The course class of a Cityscapes id-map value; ``None`` for stuff, void, an evaluation-ignored
    class (caravan, trailer), or a group region (id < 1000) when ``crowd`` is False."""
    is_group = value < 1000
    if is_group and not crowd:
        return None
    return CITYSCAPES_ID_TO_INDEX.get(value if is_group else value // 1000)


def instances_from_ids(ids: torch.Tensor, crowd: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int [H, W] Cityscapes id map -> (masks [N, H, W] uint8, labels [N], iscrowd [N]) of the 8 classes."""
    masks, labels, iscrowd = [], [], []
    for value in torch.unique(ids).tolist():
        index = class_of_id(value, crowd)
        if index is None:
            continue
        masks.append(ids == value)
        labels.append(index)
        iscrowd.append(int(value < 1000))
    if not masks:
        return torch.zeros(0, *ids.shape, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    return torch.stack(masks).to(torch.uint8), torch.tensor(labels), torch.tensor(iscrowd)


class CityscapesInstances(torch.utils.data.Dataset):
    """Cityscapes fine instance annotations of one split, in the module's target format.

    ``root`` defaults to ``$CITYSCAPES_DATASET``; ``scale`` < 1 downsizes (image bilinear with
    antialiasing, id map nearest, so no id is blended into another). ``crowd``: see the module
    docstring. ``files`` lists the (image, instanceIds) pairs in item order.
    """

    def __init__(self, root: str | Path | None = None, split: str = "train", transforms: Transforms | None = None,
                 scale: float = 1.0, crowd: bool = False) -> None:
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        self.files = cityscapes_pairs(root, split)
        self.transforms, self.scale, self.crowd = transforms, scale, crowd

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict]:
        image_path, ids_path = self.files[index]
        image = _rgb(image_path)
        ids = torch.from_numpy(read_instance_ids(ids_path))
        if self.scale != 1:
            size = [round(image.shape[-2] * self.scale), round(image.shape[-1] * self.scale)]
            image = F.resize(image, size, antialias=True)
            ids = F.resize(tv_tensors.Mask(ids[None]), size)[0].as_subclass(torch.Tensor)
        target = make_target(*instances_from_ids(ids, self.crowd), image_id=index)
        return self.transforms(image, target) if self.transforms else (image, target)

    def image_labels(self, index: int) -> list[int]:
        """The class indices of item ``index``'s instances, from its id PNG alone (for repeat factors)."""
        classes = (class_of_id(value, self.crowd) for value in np.unique(read_instance_ids(self.files[index][1])).tolist())
        return [c for c in classes if c is not None]


# ---------------------------------------------------------------------------------------------
# COCO person + vehicle subset
# ---------------------------------------------------------------------------------------------

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


class CocoUrbanSubset(torch.utils.data.Dataset):
    """COCO images holding at least one person or vehicle, with only those annotations kept.

    ``root`` holds ``{split}/`` images and, under ``annotations/``, either the subset file
    ``urban_{split}.json`` written by ``data_scripts/download_coco.py`` or the official
    ``instances_{split}.json`` (the subset file wins; or pass ``ann_file``). Categories are mapped
    to course classes by :data:`COCO_TO_INDEX`; crowd annotations follow ``crowd`` as for Cityscapes.
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
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints timing lines
            self.coco = COCO(str(ann_file))
        self.images_dir = self.root / split
        self.transforms, self.crowd = transforms, crowd
        self.image_ids = [image["id"] for image in coco_urban_subset(self.coco.dataset)["images"]]

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict]:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        path = self.images_dir / info["file_name"]
        if not path.is_file():
            raise MissingData(f"missing COCO image {path}; run: {DOWNLOAD_COCO.format(root=self.root)}")
        image = _rgb(path)
        annotations = self._annotations(image_id)
        masks = torch.from_numpy(np.stack([self.coco.annToMask(a) for a in annotations])) if annotations \
            else torch.zeros(0, info["height"], info["width"], dtype=torch.uint8)
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


def toycity(*args, **kwargs) -> torch.utils.data.Dataset:
    """``course_lib.toycity.ToyCityDataset(*args, **kwargs)``: the synthetic offline dataset."""
    from course_lib.toycity import ToyCityDataset

    return ToyCityDataset(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Command-line datasets (shared by `python -m course_lib train` and `... eval`)
# ---------------------------------------------------------------------------------------------

#: Default split per dataset and purpose.
DEFAULT_SPLITS = {("cityscapes", "train"): "train", ("cityscapes", "eval"): "val",
                  ("coco", "train"): "train2017", ("coco", "eval"): "val2017"}


def add_dataset_arguments(parser: "argparse.ArgumentParser", toycity_length: int, toycity_seed: int) -> None:
    """Add ``--data --root --split --scale --length --data-seed --height --width`` to ``parser``."""
    parser.add_argument("--data", choices=("toycity", "cityscapes", "coco"), required=True)
    parser.add_argument("--root", help="Cityscapes folder (default $CITYSCAPES_DATASET) or COCO folder (what data_scripts/download_coco.py wrote)")
    parser.add_argument("--split", help="Cityscapes / COCO split (default: train/train2017 to train, val/val2017 to evaluate)")
    parser.add_argument("--scale", type=float, default=1.0, help="Cityscapes: downscale factor in (0, 1], e.g. 0.5 for 512x1024")
    parser.add_argument("--length", type=int, default=toycity_length, help="ToyCity: number of generated scenes")
    parser.add_argument("--data-seed", type=int, default=toycity_seed, help="ToyCity: seed of the first scene")
    parser.add_argument("--height", type=int, default=128, help="ToyCity image height")
    parser.add_argument("--width", type=int, default=256, help="ToyCity image width")


def dataset_from_arguments(args: "argparse.Namespace", purpose: str, transforms: Transforms | None = None) -> torch.utils.data.Dataset:
    """The dataset the options of :func:`add_dataset_arguments` name, for ``purpose`` ``"train"`` or ``"eval"``.

    Evaluation keeps Cityscapes group regions and COCO crowds as ignore regions (``crowd=True``),
    as the official evaluations do; training drops them.
    """
    if args.data == "toycity":
        if args.length < 1:
            raise BadInput(f"--length {args.length}: ToyCity needs at least 1 image (a scene); give --length 1 or more")
        return toycity(args.length, seed=args.data_seed, height=args.height, width=args.width, transforms=transforms)
    args.split = args.split or DEFAULT_SPLITS[(args.data, purpose)]
    crowd = purpose == "eval"
    if args.data == "cityscapes":
        return CityscapesInstances(args.root, split=args.split, scale=args.scale, transforms=transforms, crowd=crowd)
    if args.root is None:
        raise UserError("--data coco needs --root (the folder data_scripts/download_coco.py wrote)")
    return CocoUrbanSubset(args.root, split=args.split, transforms=transforms, crowd=crowd)
