"""The data every stage passes on: instance targets, masks, their run-length encodings, batches, matchings.

* :mod:`~course_lib.structures.instances`: the target dict, binary masks, COCO RLEs, collate,
* :mod:`~course_lib.structures.matching`: one-to-one matching by the Hungarian algorithm (the one matcher).
"""
