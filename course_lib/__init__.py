"""Companion library of the course "Urban Scene Instance Segmentation - a deep dive into Mask R-CNN".

One package per stage of Mask R-CNN's life, one concept per module (the map, with the chapter that
teaches each part, is ``course_lib/README.md``):

* ``scratch``: Week 1's building blocks written out (anchors, box maths, assignment, RoI Align),
* ``structures``: instance targets, masks, RLEs, batches, the one matcher,
* ``modeling``: building Mask R-CNN (every option a builder argument), its heads, paste and internals,
* ``data``: datasets by name (Cityscapes, COCO urban, ToyCity), augmentation, sampling,
* ``engine``: the training loop, checkpoints, recipes, data parallelism, the one prediction loop,
* ``evaluation``: COCO AP, the official Cityscapes evaluation, failure analysis, tracking metrics,
* ``deploy``: timing, inference variants, benchmarks, ONNX / OpenVINO export, INT8,
* ``tracking``: trackers behind one interface, video in and out, annotated video,
* ``viz``: the one instance drawer and the chapters' figures; ``zoo``: where weights come from;
* ``cli``: ``python -m course_lib ...``; ``exercises``: the checked exercises; ``utils``: plumbing.

Subpackages are imported on use (``from course_lib.data import toycity``), so importing the package is cheap.
"""

__version__ = "0.1.0"
