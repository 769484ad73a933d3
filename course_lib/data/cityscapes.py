"""Cityscapes instances in torchvision's detection format, read from the official folder layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from course_lib import environment
from course_lib.classes import CITYSCAPES_ID_TO_INDEX
from course_lib.data.augment import Transforms
from course_lib.data.images import read_rgb
from course_lib.errors import BadInput, MissingData
from course_lib.structures.instances import make_target

DOWNLOAD_CITYSCAPES = "python data_scripts/download_cityscapes.py --dest {root}"


def cityscapes_pairs(root: str | Path | None, split: str) -> list[tuple[Path, Path]]:
    """Sorted (``*_leftImg8bit.png``, ``*_gtFine_instanceIds.png``) pairs of a split of ``root``
    (None: the folder ``CITYSCAPES_DATASET`` names, :func:`course_lib.environment.cityscapes_folder`).

    Raises :class:`MissingData` naming the missing folder or file and the download command.
    """
    root = environment.cityscapes_folder() if root is None else root
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
    """A ``*_instanceIds.png`` -> int32 [H, W] ids (label id * 1000 + k, or a plain label id);
    :class:`BadInput` for a file cut short or not an image."""
    try:
        with Image.open(path) as image:  # 16-bit PNG: Pillow opens it as mode I;16 or I
            return np.asarray(image).astype(np.int32)
    except (OSError, SyntaxError) as error:  # unidentified, truncated, broken PNG
        raise BadInput(f"{path}: cannot read this id map ({error}); re-extract it from gtFine_trainvaltest.zip") from None


def check_holds_instances(pairs: list[tuple[Path, Path]]) -> None:
    """:class:`BadInput` unless some ``*_instanceIds.png`` of ``pairs`` holds an instance id (label id * 1000 + k).

    Files are read in order until one does: on Cityscapes, where almost every frame shows a car,
    that is the first file. A split without any is refused, since training on it would learn
    nothing and evaluating it would score nothing: it is most likely ``*_labelIds.png`` files
    (one plain label id per class) saved under the instance files' names.
    """
    for _, ids_path in pairs:
        if read_instance_ids(ids_path).max() >= 1000:
            return
    raise BadInput(f"none of the {len(pairs)} *_gtFine_instanceIds.png files under {pairs[0][1].parent.parent} holds an "
                   "instance id (label id * 1000 + k): they look like *_labelIds.png; give the gtFine instanceIds files "
                   f"(Cityscapes package gtFine_trainvaltest.zip, or cityscapesscripts' json2instanceImg)")


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

    Checked when the dataset is made: the layout (:func:`cityscapes_pairs`) and that the id PNGs
    hold instances (:func:`check_holds_instances`). Checked when an item is read, where both files
    are decoded anyway: that the id PNG has its image's size (another size would misplace every
    mask, so perfect predictions would score AP 0).
    """

    def __init__(self, root: str | Path | None = None, split: str = "train", transforms: Transforms | None = None,
                 scale: float = 1.0, crowd: bool = False) -> None:
        if not 0 < scale <= 1:
            raise BadInput(f"scale {scale}: give a downscale factor in (0, 1], e.g. 0.5 for 512x1024 frames")
        self.files = cityscapes_pairs(root, split)
        check_holds_instances(self.files)
        self.transforms, self.scale, self.crowd = transforms, scale, crowd

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict]:
        image_path, ids_path = self.files[index]
        image = read_rgb(image_path)
        ids = torch.from_numpy(read_instance_ids(ids_path))
        if tuple(ids.shape) != tuple(image.shape[-2:]):
            raise BadInput(f"{ids_path} is {ids.shape[1]}x{ids.shape[0]} pixels but its image {image_path.name} is "
                           f"{image.shape[-1]}x{image.shape[-2]}: an id map has its image's size; re-extract both from the "
                           "Cityscapes packages (or export them again together)")
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
