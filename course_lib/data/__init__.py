"""Datasets in torchvision's detection format, and what happens to them before training.

* :mod:`~course_lib.data.catalog`: a dataset by name (``toycity``, ``cityscapes``, ``coco``) and split,
* :mod:`~course_lib.data.cityscapes`, :mod:`~course_lib.data.coco_urban`: the real datasets' files,
* :mod:`~course_lib.data.toycity`: the procedural street with exact ground truth,
* :mod:`~course_lib.data.augment`: training augmentation (``transforms.v2``),
* :mod:`~course_lib.data.sampling`: which items each step sees (repeat-factor sampling),
* :mod:`~course_lib.data.images`: image files to RGB tensors.
"""
