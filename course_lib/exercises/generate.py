"""Shared case generators of the exercises: seeded random boxes and IoU matrices with exact ties.

Every generator takes its own seed, so each exercise's cases are the same on every run and machine.
Ties are built so the tied value is exact in float64 (an IoU of 50 / 100 is 0.5 to the last bit),
which is why tie cases use float64 tensors: a float32 0.3 is not the Python float 0.3.
"""

from __future__ import annotations

import torch
from torch import Tensor


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_boxes(n: int, g: torch.Generator, extent: float = 60.0, size: float = 30.0, dtype: torch.dtype = torch.float32) -> Tensor:
    """``Tensor[n, 4]`` of (x1, y1, x2, y2) boxes: top-left in ``[0, extent)``, sides in ``[2, size + 2)``."""
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * extent
    return torch.cat([xy, xy + torch.rand(n, 2, generator=g, dtype=dtype) * size + 2], dim=1)


def distinct_scores(n: int, g: torch.Generator) -> Tensor:
    """``Tensor[n]`` float32 scores in (0, 1], all different (a shuffled ladder), so the order is unambiguous."""
    return (torch.randperm(n, generator=g).float() + 1) / max(n, 1)


def iou_with_ties(rows: int, cols: int, g: torch.Generator, values: tuple[float, ...]) -> Tensor:
    """``Tensor[rows, cols]`` float64 IoU-like matrix whose entries are drawn from ``values`` and uniform noise.

    Half the entries are exact copies of the tie values (thresholds, duplicates of a maximum), the
    rest uniform in [0, 1): the cases where ``>`` and ``>=``, ``argmax`` and "every maximum" differ.
    """
    noise = torch.rand(rows, cols, generator=g, dtype=torch.float64)
    picks = torch.tensor(values, dtype=torch.float64)[torch.randint(0, len(values), (rows, cols), generator=g)]
    return torch.where(torch.rand(rows, cols, generator=g) < 0.5, picks, noise)
