"""ToyCity: a procedural street with exact ground truth (instances, amodal masks, occlusion, tracks).

``scene(seed)`` gives one image and its target; ``clip(seed, n)`` a short video with track ids;
``ToyCityDataset`` wraps scenes as a torch ``Dataset``; ``held_out(n)`` is the split every
ToyCity evaluation uses (seeds from ``HELD_OUT_SEED``). Modules: ``world`` (camera, street,
actors, in metres), ``draw`` (actors, with OpenCV), ``background`` (the street), ``scene`` (compositing and ground truth),
``video`` (motion), ``dataset``, ``export`` (COCO and Cityscapes files).
"""

try:
    import cv2  # noqa: F401 - ToyCity draws everything with OpenCV
except ImportError as error:
    raise ImportError("course_lib.data.toycity needs OpenCV: pip install opencv-python-headless "
                      "(Colab already has it)") from error

from .dataset import HELD_OUT_SEED, ToyCityDataset, held_out, to_tv_tensors
from .scene import MAX_OCCLUSION, MIN_VISIBLE_AREA, scene
from .video import clip

__all__ = ["scene", "clip", "ToyCityDataset", "to_tv_tensors", "held_out", "HELD_OUT_SEED", "MIN_VISIBLE_AREA", "MAX_OCCLUSION"]
