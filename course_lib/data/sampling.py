"""Which dataset items each training step sees: an epoch-by-epoch shuffle, optionally repeat-factor sampled.

Plain order: every epoch is a fresh permutation of the dataset, seeded by (seed, epoch), so the
batch of any step is a pure function of (seed, step) and a resumed run sees exactly the batches an
uninterrupted one would.

Repeat-factor sampling (Gupta et al., "LVIS", CVPR 2019, section 4; detectron2's
``RepeatFactorTrainingSampler``) shows images with rare classes more often. With ``f_c`` the
fraction of training images that contain class ``c`` and a threshold ``t``:

    r_c = max(1, sqrt(t / f_c))            # classes in at least a fraction t of the images: 1
    r_i = max over the classes c in image i of r_c      (1 for an image with no instance)

Each epoch, image ``i`` appears ``floor(r_i)`` times plus once more with probability
``r_i - floor(r_i)`` (stochastic rounding, drawn from the epoch's seed), and the expanded list is
shuffled. An epoch is therefore longer than the dataset, and its length varies a little from epoch
to epoch. The loss is unchanged; only how often each image is seen moves. Cityscapes' truck, bus
and train, with about 200 to 500 training instances each (He et al., 2017), are such rare classes.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from course_lib.classes import CLASSES

#: ``--repeat-threshold``'s help in the training command lines.
THRESHOLD_HELP = ("repeat-factor sampling (LVIS): an image holding a class found in fewer than this fraction of the "
                  "images is shown up to sqrt(threshold / fraction) times per epoch (0: off; LVIS used 0.001 "
                  "with 1,203 classes; ToyCity's 8 classes: e.g. 0.44, which shows train scenes twice)")


def class_image_fractions(label_sets: Sequence[Iterable[int]]) -> dict[int, float]:
    """``f_c``: the fraction of the images whose label set contains class ``c``, for every class seen."""
    counts: dict[int, int] = {}
    for labels in label_sets:
        for c in set(labels):
            counts[c] = counts.get(c, 0) + 1
    return {c: n / len(label_sets) for c, n in sorted(counts.items())}


def class_repeat_factors(fractions: dict[int, float], threshold: float) -> dict[int, float]:
    """``r_c = max(1, sqrt(threshold / f_c))`` for each class's image fraction ``f_c``."""
    if not 0 < threshold <= 1:
        raise ValueError(f"the repeat-factor threshold is a fraction of the images in (0, 1], got {threshold}")
    return {c: max(1.0, math.sqrt(threshold / f)) for c, f in fractions.items()}


def repeat_factors(label_sets: Sequence[Iterable[int]], threshold: float) -> torch.Tensor:
    """float64 [N]: the LVIS repeat factor ``r_i`` of each image (see the module docstring).

    ``label_sets[i]`` holds the class indices of image ``i``'s training instances.
    """
    if not label_sets:
        raise ValueError("no images to compute repeat factors for")
    class_factor = class_repeat_factors(class_image_fractions(label_sets), threshold)
    return torch.tensor([max((class_factor[c] for c in set(labels)), default=1.0) for labels in label_sets],
                        dtype=torch.float64)


def dataset_repeat_factors(dataset, threshold: float, progress: bool = True) -> torch.Tensor:
    """:func:`repeat_factors` of ``dataset``'s items; with ``progress``, a bar and a line per class."""
    label_sets = dataset_label_sets(dataset, progress)
    factors = repeat_factors(label_sets, threshold)
    if progress:
        fractions = class_image_fractions(label_sets)
        for c, factor in class_repeat_factors(fractions, threshold).items():
            print(f"  {CLASSES[c]:<10} in {fractions[c]:6.1%} of the images: repeat factor {factor:.2f}")
        print(f"  an epoch shows {factors.sum().item():.0f} images on average, for {len(factors)} items")
    return factors


def dataset_label_sets(dataset, progress: bool = True) -> list[set[int]]:
    """The class indices of each item's training instances, read with ``dataset.image_labels(i)``.

    The course's datasets read them without decoding images (Cityscapes: the instance-id PNG; COCO:
    the annotations) or, for ToyCity, by generating the scene. Another dataset must offer the same
    method (the labels before random augmentation).
    """
    if not hasattr(dataset, "image_labels"):
        raise TypeError(f"{type(dataset).__name__} has no image_labels(index) method, which repeat-factor "
                        "sampling needs: add one returning the class indices of item index's instances")
    return [set(dataset.image_labels(i)) for i in tqdm(range(len(dataset)), desc="labels", disable=not progress)]


def epoch_order(seed: int, epoch: int, length: int, factors: torch.Tensor | None = None) -> list[int]:
    """The dataset indices of one epoch, in training order.

    Without ``factors``: a permutation of ``range(length)``. With ``factors`` [length]: each index
    repeated by the stochastic rounding of its factor, then shuffled; both draws come from a
    generator seeded by (seed, epoch).
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if factors is None:
        return torch.randperm(length, generator=generator).tolist()
    whole = factors.floor()
    repeats = whole + (torch.rand(length, generator=generator, dtype=torch.float64) < factors - whole)
    indices = torch.repeat_interleave(torch.arange(length), repeats.long())
    return indices[torch.randperm(len(indices), generator=generator)].tolist()


def sample_stream(seed: int, length: int, factors: torch.Tensor | None = None) -> Iterator[int]:
    """Dataset indices in training order, epoch after epoch, without end."""
    if factors is not None and factors.shape != (length,):
        raise ValueError(f"need one repeat factor per dataset item ({length}), got {tuple(factors.shape)}")
    for epoch in itertools.count():
        yield from epoch_order(seed, epoch, length, factors)


def batch_plan(start: int, steps: int, *, batch_size: int, dataset_length: int, seed: int,
               factors: torch.Tensor | None = None) -> list[list[int]]:
    """The dataset indices of the batches of steps ``start .. steps-1`` (``batch_size`` each).

    A pure function of its arguments, so the data "sampler position" is just the step.
    """
    stream = itertools.islice(sample_stream(seed, dataset_length, factors), start * batch_size, steps * batch_size)
    flat = list(stream)
    return [flat[i:i + batch_size] for i in range(0, len(flat), batch_size)]


def batch_indices(step: int, *, batch_size: int, dataset_length: int, seed: int,
                  factors: torch.Tensor | None = None) -> list[int]:
    """The dataset indices of the batch at ``step`` (see :func:`batch_plan`)."""
    return batch_plan(step, step + 1, batch_size=batch_size, dataset_length=dataset_length, seed=seed, factors=factors)[0]
