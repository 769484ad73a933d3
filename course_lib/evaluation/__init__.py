"""Scores: COCO box and mask AP, the official Cityscapes evaluation, failure analysis, tracking metrics.

* :mod:`~course_lib.evaluation.coco_eval`: pycocotools AP with a per-class table,
* :mod:`~course_lib.evaluation.matched_masks`: the IoU of matched masks, maskness,
* :mod:`~course_lib.evaluation.cityscapes_eval`: cityscapesscripts' instance-level evaluation,
* :mod:`~course_lib.evaluation.failures`: missed objects, false detections, confused classes,
* :mod:`~course_lib.evaluation.track_metrics`: identity switches, mask flicker, TrackEval's HOTA,
* :mod:`~course_lib.evaluation.mots`: the MOTS text format and TrackEval's scores on it.
"""
