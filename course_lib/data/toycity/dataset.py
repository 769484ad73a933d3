"""ToyCity as a torch ``Dataset``: scenes generated on the fly, in torchvision's detection format."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from .scene import scene

#: First scene seed of ToyCity's held-out split: training uses seeds 0..N-1, so these scenes are never trained on.
HELD_OUT_SEED = 1_000_000


def to_tv_tensors(image, target: dict[str, torch.Tensor]) -> tuple[tv_tensors.Image, dict]:
    """uint8 [H, W, 3] + target -> float32 [3, H, W] Image in [0, 1] + target with tv_tensors.

    ``boxes`` becomes ``BoundingBoxes`` (XYXY, canvas (H, W)) and ``masks``/``amodal_masks``
    become ``Mask``, so transforms.v2 moves them together with the image.
    """
    pixels = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1))
    size = tuple(pixels.shape[-2:])
    out = dict(target)
    out["boxes"] = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=size)
    out["masks"] = tv_tensors.Mask(target["masks"])
    out["amodal_masks"] = tv_tensors.Mask(target["amodal_masks"])
    return F.to_dtype(pixels, torch.float32, scale=True), out


class ToyCityDataset(Dataset):
    """``length`` scenes; item ``i`` is ``scene(seed + i, height, width, **scene_options)``.

    Items are ``(image, target)`` as returned by :func:`to_tv_tensors`, then passed through
    ``transforms(image, target)`` if given (a transforms.v2 callable). Nothing is cached: a scene
    takes a few tens of milliseconds, and two workers of a DataLoader never share state.
    """

    def __init__(self, length: int, *, seed: int = 0, height: int = 512, width: int = 1024, transforms=None,
                 **scene_options):
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}.")
        self.length, self.seed, self.height, self.width = length, seed, height, width
        self.transforms = transforms
        self.scene_options = scene_options

    def __len__(self) -> int:
        return self.length

    def _scene(self, index: int):
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for a ToyCityDataset of length {self.length}")
        return scene(self.seed + index % self.length, self.height, self.width, **self.scene_options)

    def __getitem__(self, index: int):
        image, target = to_tv_tensors(*self._scene(index))
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def image_labels(self, index: int) -> list[int]:
        """The class indices of scene ``index``'s instances (it renders the scene: hidden objects are dropped)."""
        return self._scene(index)[1]["labels"].tolist()


def held_out(length: int, height: int = 128, width: int = 256) -> ToyCityDataset:
    """The first ``length`` held-out scenes (seeds from :data:`HELD_OUT_SEED`), at the shipped model's 128x256 by default."""
    return ToyCityDataset(length, seed=HELD_OUT_SEED, height=height, width=width)
