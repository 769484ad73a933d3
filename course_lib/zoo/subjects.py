"""The model and image a Week 1 chapter opens up: COCO on a real street where it can, else ToyCity."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image
from torchvision.models.detection import MaskRCNN

from course_lib import environment, zoo
from course_lib.data.toycity.scene import scene
from course_lib.utils.download import download
from course_lib.zoo import files

#: A real street photo with pedestrians (Penn-Fudan, from torchvision's gallery assets), used
#: with the COCO model when no Cityscapes copy is present.
STREET_PHOTO_URL = "https://raw.githubusercontent.com/pytorch/vision/81b2133d5a2e5ad9f3921e6e5ad6943a00c215db/gallery/assets/FudanPed00054.png"


@dataclass
class Subject:
    """The model a Week 1 chapter opens up and the image it runs on, with names for the banner."""

    model: MaskRCNN
    image: Tensor  # [3, H, W] in [0, 1]
    model_name: str
    data_name: str


def _real_street_image() -> tuple[Tensor, str] | None:
    """A Cityscapes val image if the dataset is present, else the street photo if it can be downloaded."""
    root = environment.cityscapes_root()
    if root is not None:
        path = sorted((root / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png"))[0]
        return decode_image(str(path), mode=ImageReadMode.RGB).float() / 255, f"Cityscapes val image {path.name}"
    try:
        path = download(STREET_PHOTO_URL, files.weights_dir().parent / "course_images" / "FudanPed00054.png", progress=False)
    except (ConnectionError, OSError, ValueError):
        return None
    return decode_image(str(path), mode=ImageReadMode.RGB).float() / 255, "street photo FudanPed00054 (Penn-Fudan)"


def chapter_subject(seed: int = 3) -> Subject:
    """The COCO model on a real street image where weights and image can be had, else the ToyCity
    model on ToyCity scene ``seed`` (``zoo.course_model`` decides; ``COURSE_OFFLINE=1`` forces ToyCity)."""
    model, model_name = zoo.course_model()
    real = _real_street_image() if zoo.available("coco") and model_name.startswith("COCO") else None
    if real is not None:
        image, data_name = real
    else:
        height = min(model.transform.min_size[0], 512)  # the model's working height, at most Cityscapes' half size
        width = 2 * height
        array, _ = scene(seed, height, width)
        image, data_name = torch.from_numpy(array).permute(2, 0, 1).float() / 255, f"ToyCity scene {seed} ({height}x{width})"
    return Subject(model=model.cpu().eval(), image=image, model_name=model_name, data_name=data_name)
