"""The course's label space: the eight Cityscapes "thing" classes and their COCO counterparts.

Index 0 is background, as torchvision's detection models expect; classes 1..8 follow the order of
cityscapesscripts' label table (person, rider, car, truck, bus, train, motorcycle, bicycle).
"""

from __future__ import annotations

from cityscapesscripts.helpers.labels import labels as _cityscapes_labels

#: The Cityscapes labels that have instances and count in the official evaluation.
CITYSCAPES_THING_LABELS = tuple(
    label for label in _cityscapes_labels if label.hasInstances and not label.ignoreInEval
)

#: Class names by model index; index 0 is the background class.
CLASSES: tuple[str, ...] = ("__background__",) + tuple(l.name for l in CITYSCAPES_THING_LABELS)
NUM_CLASSES = len(CLASSES)  # 9, background included
CLASS_TO_INDEX = {name: index for index, name in enumerate(CLASSES)}

#: Model index -> Cityscapes label id (24..33), as written in *_labelIds.png / *_instanceIds.png.
INDEX_TO_CITYSCAPES_ID = {CLASS_TO_INDEX[l.name]: l.id for l in CITYSCAPES_THING_LABELS}
CITYSCAPES_ID_TO_INDEX = {cs_id: index for index, cs_id in INDEX_TO_CITYSCAPES_ID.items()}

#: Course class -> COCO category id (the ids of the official instances JSON and of torchvision's
#: COCO-trained models). "rider" has no COCO class: a rider is a COCO "person" on a bicycle or
#: motorcycle, which is why transfer learning must initialise the rider class some other way.
COCO_CATEGORY_ID = {
    "person": 1,
    "bicycle": 2,
    "car": 3,
    "motorcycle": 4,
    "bus": 6,
    "train": 7,
    "truck": 8,
}

#: A fixed, readable colour per class (RGB, 0..255), used by every figure of the course.
CLASS_COLORS = {
    "__background__": (0, 0, 0),
    "person": (220, 20, 60),
    "rider": (255, 0, 0),
    "car": (0, 0, 142),
    "truck": (0, 0, 70),
    "bus": (0, 60, 100),
    "train": (0, 80, 100),
    "motorcycle": (0, 0, 230),
    "bicycle": (119, 11, 32),
}
