"""The data every stage passes on: instance targets, masks, their run-length encodings, batches, matchings.

* :mod:`~course_lib.structures.instances`: the target dict, its boxes, collate,
* :mod:`~course_lib.structures.masks`: the one mask shape, threshold, COCO RLEs and mask IoU,
* :mod:`~course_lib.structures.matching`: one-to-one matching by the Hungarian algorithm (the one matcher) and the class gate.
"""
