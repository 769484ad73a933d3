"""Read an image file as an RGB tensor, whatever its mode (8- or 16-bit, grey or colour)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from course_lib.errors import BadInput

#: Pillow modes of 16-bit greyscale images: ``convert("RGB")`` would clip them to white.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


def read_rgb(path: Path) -> tv_tensors.Image:
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
