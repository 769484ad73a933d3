"""Companion library of the course "Urban Scene Instance Segmentation - a deep dive into Mask R-CNN".

One package per stage of Mask R-CNN's life, one concept per module, stacked in layers (bottom
first; a module imports only from layers below its own, ``pyproject.toml`` holds the contract; the
map, with the chapter that teaches each part, is ``course_lib/README.md``):

* ``classes``, ``errors``; ``environment`` (device, fast mode, environment variables); ``utils``
  (atomic files, outputs, downloads, timing); ``results`` (the committed results files),
* ``scratch`` (Week 1's building blocks written out), ``structures`` (instances, masks, the one matcher),
* ``modeling`` (building Mask R-CNN), ``viz`` (the one instance drawer, Week 1's figures),
* ``data`` (datasets by name, augmentation, sampling), ``engine`` (the training loop),
* ``zoo`` (where weights come from), ``evaluation`` (the one prediction loop, AP, failures),
* ``tracking`` (trackers, video in and out), ``deploy`` (variants, export, INT8, benchmarks),
* ``report`` (tables and figures of the results), ``exercises``; ``cli`` (``python -m course_lib ...``).

Subpackages are imported on use (``from course_lib.data import toycity``), so importing the package is cheap.
"""

__version__ = "0.1.0"
