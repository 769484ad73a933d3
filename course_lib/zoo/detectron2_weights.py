"""Detectron2's model zoo without Detectron2: its Mask R-CNN R50/R101-FPN weights in torchvision.

``zoo.load("detectron2:Cityscapes/mask_rcnn_R_50_FPN")`` downloads the model-zoo ``.pkl`` (a
pickled ``{"model": {name: numpy array}, "__author__": ...}``, the format Detectron2's
``DetectionCheckpointer`` reads) into torch's hub cache, checks that every array has the name and
shape the config implies, and loads it into a torchvision ``MaskRCNN`` built with Detectron2's
conventions (``course_lib.modeling.detectron2_arch``). Detectron2's classifier puts background *last*
and has no background box or mask rows, torchvision's puts it *first*: rows are moved, and zero
rows fill the background's box and mask. Detectron2 feeds BGR pixels in 0-255, the course RGB in
0-1: the first convolution's input channels are reversed (the mean/std live in the model).
"""

from __future__ import annotations

import math
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import Tensor
from torchvision.models.detection import MaskRCNN

from course_lib.classes import CITYSCAPES_THING_LABELS, CLASSES
from course_lib.errors import BadInput, WeightsUnavailable
from course_lib.modeling import detectron2_arch
from course_lib.zoo import files

URL_PREFIX = "https://dl.fbaipublicfiles.com/detectron2/"
CITYSCAPES_CLASSES = tuple(label.name for label in CITYSCAPES_THING_LABELS)  # Detectron2's order too
COCO_CLASSES = tuple(
    name
    for name in torchvision.models.detection.MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
    if name not in ("__background__", "N/A")
)  # the 80 COCO categories in id order: Detectron2's contiguous ids 0..79


@dataclass(frozen=True)
class Entry:
    """One model-zoo entry: config path (without .yaml), file under it, ResNet depth, classes, test sizes."""

    name: str
    file: str  # "<model id>/model_final_<commit>.pkl", as in Detectron2's model_zoo.py
    depth: int
    classes: tuple[str, ...]  # dataset order, background excluded
    min_size: int
    max_size: int

    @property
    def url(self) -> str:
        return f"{URL_PREFIX}{self.name}/{self.file}"

    @property
    def cache_name(self) -> str:
        """File name in the hub cache; ``model_final_<commit>.pkl`` alone is not unique enough to read."""
        return "detectron2_" + self.name.replace("/", "_") + "_" + Path(self.file).name


ENTRIES = {
    e.name: e
    for e in (
        Entry("Cityscapes/mask_rcnn_R_50_FPN", "142423278/model_final_af9cf5.pkl", 50, CITYSCAPES_CLASSES, 1024, 2048),
        Entry("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x", "137260431/model_final_a54504.pkl", 50, COCO_CLASSES, 800, 1333),
        Entry("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x", "137849600/model_final_f10217.pkl", 50, COCO_CLASSES, 800, 1333),
        Entry("COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x", "138205316/model_final_a3ec72.pkl", 101, COCO_CLASSES, 800, 1333),
    )
}

#: Blocks per ResNet stage res2..res5.
STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
#: Buffers that old Detectron2 versions saved but that are recomputed from the config.
DERIVED_BUFFERS = re.compile(r"pixel_(mean|std)|proposal_generator\.anchor_generator\.cell_anchors\.\d")
BN_STATS = ("running_mean", "running_var")
DDP_PREFIX = "module."


def entry(name: str) -> Entry:
    """The :class:`Entry` called ``name`` (e.g. ``"Cityscapes/mask_rcnn_R_50_FPN"``)."""
    if name not in ENTRIES:
        raise BadInput(f"unknown Detectron2 model {name!r}: choose one of {sorted(ENTRIES)}")
    return ENTRIES[name]


def check_course_classes(name: str) -> None:
    """Refuse (``BadInput``, one line) entry ``name`` unless it predicts the course's classes in the course's order.

    The commands (``python -m course_lib eval|bench|video|export``) read label ``i`` as
    ``course_lib.classes.CLASSES[i]``; a COCO entry's label 3 is COCO's third class.
    """
    if class_names(name) != CLASSES:
        usable = [f"detectron2:{n}" for n in ENTRIES if class_names(n) == CLASSES]
        raise BadInput(f"detectron2:{name} predicts {len(entry(name).classes)} COCO classes, not the course's "
                       f"{len(CLASSES) - 1}: use {' or '.join(usable)} here, or load it in Python with zoo.load")


# --- the file: names, shapes, reading ----------------------------------------------------------


def expected_shapes(depth: int, num_classes: int) -> dict[str, tuple[int, ...]]:
    """Detectron2's state-dict names -> shapes for a Mask R-CNN R{depth}-FPN with ``num_classes`` (no background)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv_bn(name: str, out_c: int, in_c: int, k: int) -> None:
        shapes[f"{name}.weight"] = (out_c, in_c, k, k)
        for field in ("weight", "bias", *BN_STATS):
            shapes[f"{name}.norm.{field}"] = (out_c,)

    def conv(name: str, out_c: int, in_c: int, k: int) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out_c, in_c, k, k), (out_c,)

    conv_bn("backbone.bottom_up.stem.conv1", 64, 3, 7)
    in_c = 64
    for stage, blocks in zip(range(2, 6), STAGE_BLOCKS[depth]):
        width, out_c = 64 * 2 ** (stage - 2), 256 * 2 ** (stage - 2)
        for b in range(blocks):
            prefix = f"backbone.bottom_up.res{stage}.{b}"
            if b == 0:
                conv_bn(f"{prefix}.shortcut", out_c, in_c, 1)
            conv_bn(f"{prefix}.conv1", width, in_c if b == 0 else out_c, 1)
            conv_bn(f"{prefix}.conv2", width, width, 3)
            conv_bn(f"{prefix}.conv3", out_c, width, 1)
        conv(f"backbone.fpn_lateral{stage}", 256, out_c, 1)
        conv(f"backbone.fpn_output{stage}", 256, 256, 3)
        in_c = out_c
    conv("proposal_generator.rpn_head.conv", 256, 256, 3)
    conv("proposal_generator.rpn_head.objectness_logits", len(detectron2_arch.ASPECT_RATIOS), 256, 1)
    conv("proposal_generator.rpn_head.anchor_deltas", 4 * len(detectron2_arch.ASPECT_RATIOS), 256, 1)
    for name, out_c, in_c in (("fc1", 1024, 256 * 7 * 7), ("fc2", 1024, 1024)):
        shapes[f"roi_heads.box_head.{name}.weight"], shapes[f"roi_heads.box_head.{name}.bias"] = (out_c, in_c), (out_c,)
    for name, out_c in (("cls_score", num_classes + 1), ("bbox_pred", 4 * num_classes)):
        shapes[f"roi_heads.box_predictor.{name}.weight"], shapes[f"roi_heads.box_predictor.{name}.bias"] = (out_c, 1024), (out_c,)
    for k in range(1, 5):
        conv(f"roi_heads.mask_head.mask_fcn{k}", 256, 256, 3)
    conv("roi_heads.mask_head.deconv", 256, 256, 2)
    conv("roi_heads.mask_head.predictor", num_classes, 256, 1)
    return shapes


class _ArraysOnly(pickle.Unpickler):
    """Unpickle only dicts, strings, numbers and numpy arrays: a model file must not run code."""

    ALLOWED = {
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # how Python 2 era pickles (protocol 2) store bytes
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it pickles {module}.{name}, which a weights file never needs")
        return super().find_class(module, name)


def _unpickle(path: Path, what: str) -> Any:
    """The object pickled in ``path``; ``WeightsUnavailable`` (one line) for anything that is not a plain pickle."""
    if zipfile.is_zipfile(path):  # torch.save's format since torch 1.6, e.g. a Detectron2 training's model_final.pth
        raise WeightsUnavailable(f"{what}: it is a torch.save (zip) file, not a model-zoo .pkl; delete it and load again")
    try:
        with open(path, "rb") as f:
            return _ArraysOnly(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, LookupError) as error:  # a cut file; bytes in an unknown codec
        raise WeightsUnavailable(f"{what}: it is not a readable pickle ({' '.join(str(error).split())}); delete it and load again") from None


def read_weights(path: Path, depth: int, num_classes: int) -> dict[str, np.ndarray]:
    """Read a model-zoo ``.pkl`` and check its structure -> ``{Detectron2 name: array}``.

    Refuses (``WeightsUnavailable``, one line naming ``path`` and saying to delete it) a file that is
    not ``{"model": {...}, "__author__": ...}``, misses a tensor, has one of the wrong shape, or has
    one that this architecture does not use. Names that all start with ``module.`` (a model saved
    inside ``DistributedDataParallel``) lose it, as Detectron2's checkpointer does. BatchNorm
    statistics may be absent (Detectron2 then uses mean 0, variance 1): they are filled in.
    """
    what = f"{path} is not a Detectron2 Mask R-CNN R{depth}-FPN with {num_classes} classes"
    data = _unpickle(path, what)
    if not (isinstance(data, dict) and "__author__" in data and isinstance(data.get("model"), dict)):
        raise WeightsUnavailable(f"{what} (expected a pickled {{'model': ..., '__author__': ...}}): delete it and load again")
    model = {str(k): v for k, v in data["model"].items()}  # a stray non-string name is then refused as unused
    if model and all(k.startswith(DDP_PREFIX) for k in model):  # fvcore's _strip_prefix_if_present: all or none
        model = {k[len(DDP_PREFIX):]: v for k, v in model.items()}
    weights = {k: v for k, v in model.items() if not DERIVED_BUFFERS.fullmatch(k)}
    shapes = expected_shapes(depth, num_classes)
    for name, shape in shapes.items():
        if name not in weights and name.endswith(BN_STATS):
            weights[name] = np.full(shape, 0.0 if name.endswith("mean") else 1.0, dtype=np.float32)
    missing = sorted(set(shapes) - set(weights))
    unused = sorted(set(weights) - set(shapes))
    wrong = sorted(k for k in set(shapes) & set(weights) if tuple(np.shape(weights[k])) != shapes[k])
    for problem, names in (("lacks", missing), ("has unused", unused), ("has wrongly shaped", wrong)):
        if names:
            raise WeightsUnavailable(f"{what}: it {problem} {len(names)} tensors (e.g. {names[0]}); delete it and load again")
    return weights


_GAINS = (  # weight-scale multipliers of random_weights
    ("backbone.bottom_up.stem.conv1.", 1 / 64),  # input pixels are 0-255 minus the mean: std ~60
    ("proposal_generator.rpn_head.anchor_deltas.", 0.1),  # small box corrections ...
    ("roi_heads.box_predictor.bbox_pred.", 0.1),
    ("roi_heads.box_predictor.cls_score.", 0.2),  # class and mask logits with a std of a few units
    ("roi_heads.mask_head.predictor.", 0.5),
)


def random_weights(depth: int, num_classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A stand-in state dict with exactly Detectron2's names and shapes, random float32 values.

    Convolutions and linear layers get He-normal weights scaled by ``_GAINS``, BatchNorm
    near-identity statistics, and the residual branches' last BatchNorm a small scale, so that a
    randomly weighted R50/R101 keeps its activations in range and makes detections with distinct
    scores and non-trivial masks (garbage, but testable garbage).
    """
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in expected_shapes(depth, num_classes).items():
        if len(shape) > 1:
            fan_in = int(np.prod(shape[1:]))
            gain = next((g for prefix, g in _GAINS if name.startswith(prefix)), 1.0)
            value = rng.normal(0.0, gain * math.sqrt(2.0 / fan_in), shape)
        elif name.endswith("norm.weight"):
            value = rng.uniform(0.1, 0.3, shape) if ".conv3." in name else rng.uniform(0.8, 1.2, shape)
        elif name.endswith("running_var"):
            value = rng.uniform(0.8, 1.2, shape)
        else:  # biases and running means
            value = rng.normal(0.0, 0.05, shape)
        weights[name] = value.astype(np.float32)
    return weights


def save_weights(weights: dict[str, np.ndarray], path: Path, author: str = "course_lib stand-in") -> Path:
    """Write ``weights`` as a model-zoo ``.pkl`` (``{"model": ..., "__author__": ...}``), atomically."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        pickle.dump({"model": weights, "__author__": author}, f, protocol=4)
    return partial.replace(path)


# --- converting names and values ----------------------------------------------------------------

_RENAMES = (  # Detectron2 name pattern -> torchvision name, tried in order
    (r"backbone\.bottom_up\.stem\.conv1\.norm\.(.+)", r"backbone.body.bn1.\1"),
    (r"backbone\.bottom_up\.stem\.conv1\.(.+)", r"backbone.body.conv1.\1"),
    (r"backbone\.bottom_up\.res(\d)\.(\d+)\.shortcut\.norm\.(.+)", lambda m: f"backbone.body.layer{int(m[1]) - 1}.{m[2]}.downsample.1.{m[3]}"),
    (r"backbone\.bottom_up\.res(\d)\.(\d+)\.shortcut\.(.+)", lambda m: f"backbone.body.layer{int(m[1]) - 1}.{m[2]}.downsample.0.{m[3]}"),
    (r"backbone\.bottom_up\.res(\d)\.(\d+)\.conv(\d)\.norm\.(.+)", lambda m: f"backbone.body.layer{int(m[1]) - 1}.{m[2]}.bn{m[3]}.{m[4]}"),
    (r"backbone\.bottom_up\.res(\d)\.(\d+)\.conv(\d)\.(.+)", lambda m: f"backbone.body.layer{int(m[1]) - 1}.{m[2]}.conv{m[3]}.{m[4]}"),
    (r"backbone\.fpn_lateral(\d)\.(.+)", lambda m: f"backbone.fpn.inner_blocks.{int(m[1]) - 2}.0.{m[2]}"),
    (r"backbone\.fpn_output(\d)\.(.+)", lambda m: f"backbone.fpn.layer_blocks.{int(m[1]) - 2}.0.{m[2]}"),
    (r"proposal_generator\.rpn_head\.conv\.(.+)", r"rpn.head.conv.0.0.\1"),
    (r"proposal_generator\.rpn_head\.objectness_logits\.(.+)", r"rpn.head.cls_logits.\1"),
    (r"proposal_generator\.rpn_head\.anchor_deltas\.(.+)", r"rpn.head.bbox_pred.\1"),
    (r"roi_heads\.box_head\.fc1\.(.+)", r"roi_heads.box_head.fc6.\1"),
    (r"roi_heads\.box_head\.fc2\.(.+)", r"roi_heads.box_head.fc7.\1"),
    (r"roi_heads\.box_predictor\.(.+)", r"roi_heads.box_predictor.\1"),
    (r"roi_heads\.mask_head\.mask_fcn(\d)\.(.+)", lambda m: f"roi_heads.mask_head.{int(m[1]) - 1}.0.{m[2]}"),
    (r"roi_heads\.mask_head\.deconv\.(.+)", r"roi_heads.mask_predictor.conv5_mask.\1"),
    (r"roi_heads\.mask_head\.predictor\.(.+)", r"roi_heads.mask_predictor.mask_fcn_logits.\1"),
)


def torchvision_name(name: str) -> str:
    """The torchvision ``MaskRCNN`` state-dict name of Detectron2's ``name``."""
    for pattern, replacement in _RENAMES:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, replacement, name)
    raise KeyError(f"no torchvision name for Detectron2's {name!r}")


def torchvision_value(name: str, array: np.ndarray) -> Tensor:
    """Detectron2's ``array`` in torchvision's layout: RGB first conv, background-first class rows."""
    value = torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32)
    if name == "backbone.bottom_up.stem.conv1.weight":
        return value.flip(1)  # input channels BGR -> RGB
    if name.startswith("roi_heads.box_predictor.cls_score."):
        return torch.cat([value[-1:], value[:-1]])  # [K+1]: background last -> first
    if name.startswith("roi_heads.box_predictor.bbox_pred."):
        return torch.cat([torch.zeros_like(value[:4]), value])  # [4K] -> [4(K+1)]; background boxes are never used
    if name.startswith("roi_heads.mask_head.predictor."):
        return torch.cat([torch.zeros_like(value[:1]), value])  # [K] -> [K+1]; background masks are never used
    return value


def convert(weights: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """Detectron2 state dict (numpy) -> torchvision ``MaskRCNN`` state dict (one entry per input entry)."""
    return {torchvision_name(k): torchvision_value(k, v) for k, v in weights.items()}


def class_names(name: str) -> tuple[str, ...]:
    """Label index -> class name of the converted model ``name`` (index 0 is background)."""
    return ("__background__",) + entry(name).classes


def load_file(path: Path, name: str, **options: Any) -> MaskRCNN:
    """The converted model of entry ``name`` from a model-zoo ``.pkl`` at ``path``."""
    e = entry(name)
    sizes = {"min_size": e.min_size, "max_size": e.max_size}  # the config's test-time resize, unless overridden
    model = detectron2_arch.build(e.depth, len(e.classes) + 1, **{**sizes, **options})
    model.load_state_dict(convert(read_weights(path, e.depth, len(e.classes))), strict=True)
    return model


def load(name: str, progress: bool = True, **options: Any) -> MaskRCNN:
    """Download (once, into the hub cache) and convert Detectron2's ``name``; ``options`` go to ``MaskRCNN``.

    Detectron2 publishes no checksums (the 6 hex digits in its file names are commit ids), so the
    download is not hash-checked; :func:`read_weights` checks every name and shape instead.
    """
    e = entry(name)
    return load_file(files.fetch(e.url, None, filename=e.cache_name, progress=progress), name, **options)


def status(name: str) -> str:
    """``"cached"``, ``"downloadable"`` or ``"unavailable"`` for entry ``name``."""
    e = entry(name)
    if (files.weights_dir() / e.cache_name).exists():
        return "cached"
    return "downloadable" if files.reachable(e.url) else "unavailable"
