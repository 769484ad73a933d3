"""Scores: the prediction loop, COCO box and mask AP, the official Cityscapes evaluation, failure analysis, MOTS files.

* :mod:`~course_lib.evaluation.coco_eval`: pycocotools AP with a per-class table,
* :mod:`~course_lib.evaluation.matched_masks`: the IoU of matched masks, maskness,
* :mod:`~course_lib.evaluation.cityscapes_eval`: cityscapesscripts' instance-level evaluation,
* :mod:`~course_lib.evaluation.failures`: missed objects, false detections, confused classes,
* :mod:`~course_lib.evaluation.inference`: the one prediction loop over images or a dataset, and ``evaluate_model``,
* :mod:`~course_lib.evaluation.mots`: the MOTS text format and TrackEval's scores on it.
"""
