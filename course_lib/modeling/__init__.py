"""Mask R-CNN models: built from torchvision's parts, with the course's options passed to the builder.

* :mod:`~course_lib.modeling.maskrcnn`: :func:`~course_lib.modeling.maskrcnn.build`, the one builder
  (torchvision's R50-FPN models and the CPU-sized ``toycity_small``),
* :mod:`~course_lib.modeling.coco_heads`: COCO's 91 slots read in the course's 9 classes, or transferred to fine-tune,
* :mod:`~course_lib.modeling.mask_skip`: a mask head that also reads the stride-2 stem,
* :mod:`~course_lib.modeling.mask_loss`: the mask head's targets (binary or soft) and loss,
* :mod:`~course_lib.modeling.paste`: from ``M x M`` box masks to image masks,
* :mod:`~course_lib.modeling.detectron2_arch`: the same model with Detectron2's conventions,
* :mod:`~course_lib.modeling.internals`: run a model one stage at a time and keep every intermediate,
* :mod:`~course_lib.modeling.stage_timing`: the time each stage of the forward takes (hooks on the same submodules).
"""
