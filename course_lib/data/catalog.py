"""Datasets by name: Cityscapes instances, a COCO urban subset, ToyCity, all in torchvision's detection format.

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
``iscrowd=1`` entries, which :func:`course_lib.evaluation.coco_eval.coco_metrics` treats as ignore regions;
with the default ``crowd=False`` they are dropped, because torchvision's Mask R-CNN has no notion
of crowds and would learn a whole car park as one "car" (torchvision's reference training drops
COCO crowds for the same reason). Classes that are ignored in the evaluation (caravan, trailer)
and stuff classes are skipped.
"""

from __future__ import annotations

import torch

from course_lib.data.augment import Transforms
from course_lib.data.cityscapes import CityscapesInstances
from course_lib.data.coco_urban import CocoUrbanSubset
from course_lib.data.toycity import ToyCityDataset
from course_lib.errors import BadInput, UserError

#: Default split per dataset and purpose.
DEFAULT_SPLITS = {("cityscapes", "train"): "train", ("cityscapes", "eval"): "val",
                  ("coco", "train"): "train2017", ("coco", "eval"): "val2017"}


def load_dataset(name: str, purpose: str, *, root: str | None = None, split: str | None = None, scale: float = 1.0,
                 length: int = 100, seed: int = 0, height: int = 128, width: int = 256,
                 transforms: Transforms | None = None) -> torch.utils.data.Dataset:
    """Dataset ``name`` (``"toycity"``, ``"cityscapes"``, ``"coco"``) for ``purpose`` ``"train"`` or ``"eval"``.

    ``root``, ``split`` (default :data:`DEFAULT_SPLITS`) and ``scale`` are for the real datasets;
    ``length``, ``seed``, ``height``, ``width`` for ToyCity. Evaluation keeps Cityscapes group
    regions and COCO crowds as ignore regions (``crowd=True``), as the official evaluations do;
    training drops them.
    """
    if name == "toycity":
        if length < 1:
            raise BadInput(f"--length {length}: ToyCity needs at least 1 image (a scene); give --length 1 or more")
        return ToyCityDataset(length, seed=seed, height=height, width=width, transforms=transforms)
    split = split or DEFAULT_SPLITS[(name, purpose)]
    crowd = purpose == "eval"
    if name == "cityscapes":
        return CityscapesInstances(root, split=split, scale=scale, transforms=transforms, crowd=crowd)
    if root is None:
        raise UserError("--data coco needs --root (the folder data_scripts/download_coco.py wrote)")
    return CocoUrbanSubset(root, split=split, transforms=transforms, crowd=crowd)
