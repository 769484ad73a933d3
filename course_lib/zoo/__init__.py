"""The one place that knows where model weights come from: ``course_lib.zoo.load(name, **options)``.

* :mod:`~course_lib.zoo.registry`: the names ``load`` knows (``toycity``, ``coco``, ``detectron2:...``,
  a checkpoint) and how each is built,
* :mod:`~course_lib.zoo.files`: the weights folder and fetching a file into it once,
* :mod:`~course_lib.zoo.detectron2_weights`: Detectron2's model zoo read without Detectron2,
* :mod:`~course_lib.zoo.subjects`: the model and image a Week 1 chapter opens up.
"""

from course_lib.zoo.registry import COCO_WEIGHTS, available, course_model, from_command_line, load, status, toycity_manifest

__all__ = ["COCO_WEIGHTS", "available", "course_model", "from_command_line", "load", "status", "toycity_manifest"]
