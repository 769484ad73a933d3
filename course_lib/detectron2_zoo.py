"""Detectron2's model zoo without Detectron2: its Mask R-CNN R50/R101-FPN weights in torchvision.

``zoo.load("detectron2:Cityscapes/mask_rcnn_R_50_FPN")`` downloads the model-zoo ``.pkl`` (a
pickled ``{"model": {name: numpy array}, "__author__": ...}``, the format Detectron2's
``DetectionCheckpointer`` reads) into torch's hub cache, checks that every array has the name and
shape the config implies, and loads it into a torchvision ``MaskRCNN`` built with Detectron2's
conventions:

* input: Detectron2 feeds BGR pixels in 0-255 minus ``PIXEL_MEAN`` (std 1). The course feeds RGB
  in 0-1, so the first convolution's input channels are reversed and the mean/std are divided by
  255 - the same arithmetic, one convention for every course model.
* backbone: the MSRA ResNet strides in the first 1x1 convolution of a stage (``STRIDE_IN_1X1``),
  torchvision's in the 3x3; frozen BatchNorm, FPN with a max-pooled P6.
* anchors: sizes 32-512 on strides 4-64, ratios 0.5/1/2, not rounded, offset 0, fixed strides.
* RoI pooling: ``ROIAlignV2`` (``aligned=True``, adaptive sampling) in both poolers.
* classes: Detectron2's classifier puts background *last* and has no background box/mask rows;
  torchvision puts it *first*. Rows are moved, and zero rows fill the background's box and mask.
* masks pasted into the image by sampling at pixel centres (Detectron2's ``paste_masks_in_image``).
* test time: the config's resize (Cityscapes 1024/2048, COCO 800/1333), score threshold 0.05,
  NMS 0.5, 100 detections, RPN 1000/1000 proposals at NMS 0.7; box weights (10, 10, 5, 5).
"""

from __future__ import annotations

import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from course_lib import zoo
from course_lib.classes import CITYSCAPES_THING_LABELS

URL_PREFIX = "https://dl.fbaipublicfiles.com/detectron2/"
PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)  # MODEL.PIXEL_MEAN of every entry below
PIXEL_STD_BGR = (1.0, 1.0, 1.0)
ANCHOR_SIZES = (32, 64, 128, 256, 512)
ASPECT_RATIOS = (0.5, 1.0, 2.0)
FEATURE_STRIDES = (4, 8, 16, 32, 64)  # P2..P6
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


def entry(name: str) -> Entry:
    """The :class:`Entry` called ``name`` (e.g. ``"Cityscapes/mask_rcnn_R_50_FPN"``)."""
    if name not in ENTRIES:
        raise ValueError(f"unknown Detectron2 model {name!r}: choose one of {sorted(ENTRIES)}")
    return ENTRIES[name]


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
    conv("proposal_generator.rpn_head.objectness_logits", len(ASPECT_RATIOS), 256, 1)
    conv("proposal_generator.rpn_head.anchor_deltas", 4 * len(ASPECT_RATIOS), 256, 1)
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
        ("_codecs", "encode"),  # how protocol 2 stores bytes
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


def read_weights(path: Path, depth: int, num_classes: int) -> dict[str, np.ndarray]:
    """Read a model-zoo ``.pkl`` and check its structure -> ``{Detectron2 name: array}``.

    Refuses (``WeightsUnavailable``, one line) a file that is not ``{"model": {...}, "__author__": ...}``,
    misses a tensor, has one of the wrong shape, or has one that this architecture does not use.
    BatchNorm statistics may be absent (Detectron2 then uses mean 0, variance 1): they are filled in.
    """
    what = f"{path} is not a Detectron2 Mask R-CNN R{depth}-FPN with {num_classes} classes"
    try:
        with open(path, "rb") as f:
            data = _ArraysOnly(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise zoo.WeightsUnavailable(f"{what} ({error}): delete it and load again") from None
    if not (isinstance(data, dict) and "__author__" in data and isinstance(data.get("model"), dict)):
        raise zoo.WeightsUnavailable(f"{what} (expected a pickled {{'model': ..., '__author__': ...}}): delete it and load again")
    weights = {k: v for k, v in data["model"].items() if not DERIVED_BUFFERS.fullmatch(k)}
    shapes = expected_shapes(depth, num_classes)
    for name, shape in shapes.items():
        if name not in weights and name.endswith(BN_STATS):
            weights[name] = np.full(shape, 0.0 if name.endswith("mean") else 1.0, dtype=np.float32)
    missing = sorted(set(shapes) - set(weights))
    unused = sorted(set(weights) - set(shapes))
    wrong = sorted(k for k in set(shapes) & set(weights) if tuple(np.shape(weights[k])) != shapes[k])
    for problem, names in (("lacks", missing), ("has unused", unused), ("has wrongly shaped", wrong)):
        if names:
            raise zoo.WeightsUnavailable(f"{what}: it {problem} {len(names)} tensors (e.g. {names[0]}); check the model name")
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
        pickle.dump({"model": weights, "__author__": author}, f, protocol=2)  # as the zoo's files
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


# --- the torchvision model with Detectron2's conventions -----------------------------------------


class Detectron2Anchors(AnchorGenerator):
    """Detectron2's ``DefaultAnchorGenerator``: unrounded cell anchors and fixed strides.

    torchvision rounds cell anchors to whole pixels (32 at ratio 0.5 becomes 46 x 22, not
    45.25 x 22.63) and infers strides as padded size // map size, which is not 64 for a P6 map of
    an image padded to a multiple of 32 but not 64. Either would shift every proposal.
    """

    def __init__(self, offset: float = 0.0) -> None:
        super().__init__(tuple((s,) for s in ANCHOR_SIZES), (ASPECT_RATIOS,) * len(ANCHOR_SIZES))
        self.strides = FEATURE_STRIDES
        self.cell_anchors = [self.detectron2_cell(size, offset * stride) for size, stride in zip(ANCHOR_SIZES, FEATURE_STRIDES)]

    @staticmethod
    def detectron2_cell(size: int, shift: float) -> Tensor:
        """``Tensor[3, 4]``: one anchor per ratio (h/w), centred on ``shift``, in Detectron2's float arithmetic."""
        anchors = []
        for ratio in ASPECT_RATIOS:
            w = math.sqrt(size**2.0 / ratio)
            h = ratio * w
            anchors.append([shift - w / 2.0, shift - h / 2.0, shift + w / 2.0, shift + h / 2.0])
        return torch.tensor(anchors)

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        """-> per image ``Tensor[sum_l H_l W_l 3, 4]`` (location-major, ratio-minor, as Detectron2)."""
        self.set_cell_anchors(feature_maps[0].dtype, feature_maps[0].device)
        strides = [[torch.tensor(s), torch.tensor(s)] for s in self.strides]
        per_level = self.grid_anchors([list(f.shape[-2:]) for f in feature_maps], strides)
        return [torch.cat(per_level) for _ in image_list.image_sizes]


class AlignedMultiScaleRoIAlign(MultiScaleRoIAlign):
    """Detectron2's ``ROIPooler`` with ``ROIAlignV2``: ``aligned=True`` and its level rule.

    torchvision's pooler calls ``roi_align`` with ``aligned=False`` (a half-pixel shift, kept for
    backward compatibility) and a level rule with a different epsilon; weights trained with
    ``ROIAlignV2`` expect the half-pixel-correct sampling.
    """

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        """``x``: P2..P5 by name; ``boxes``: ``Tensor[L_i, 4]`` per image -> ``Tensor[sum L_i, 256, PH, PW]``."""
        features = [x[name] for name in self.featmap_names]
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
        sizes = torchvision.ops.box_area(rois[:, 1:]).sqrt()
        levels = torch.floor(4 + torch.log2(sizes / 224 + 1e-8)).clamp(2, 5).to(torch.int64) - 2
        out = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        for level, feature_map in enumerate(features):
            k = torch.where(levels == level)[0]
            scale = 1.0 / FEATURE_STRIDES[level]
            out[k] = roi_align(feature_map, rois[k], self.output_size, scale, self.sampling_ratio, aligned=True)
        return out


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Detectron2's ``paste_masks_in_image`` (CPU path), soft: ``[N, 1, M, M]`` -> ``[N, 1, H, W]``.

    Each mask is resampled with ``grid_sample`` at the image's pixel centres inside its box (plus
    one pixel), zero elsewhere. torchvision instead pads the mask by one cell and resizes it onto the
    rounded box (Detectron1's method); the two disagree on about a pixel around each object.
    """
    height, width = image_size
    out = masks.new_zeros((len(masks), 1, height, width))
    for i, (mask, box) in enumerate(zip(masks, boxes)):
        x0, y0 = (box[:2].floor() - 1).clamp(min=0).int().tolist()
        x1, y1 = int((box[2].ceil() + 1).clamp(max=width)), int((box[3].ceil() + 1).clamp(max=height))
        ys = (torch.arange(y0, y1, dtype=torch.float32) + 0.5 - box[1]) / (box[3] - box[1]) * 2 - 1
        xs = (torch.arange(x0, x1, dtype=torch.float32) + 0.5 - box[0]) / (box[2] - box[0]) * 2 - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]  # [1, h, w, (x, y)]
        out[i, :, y0:y1, x0:x1] = torch.nn.functional.grid_sample(mask[None], grid.to(mask), align_corners=False)[0]
    return out


class Detectron2Transform(GeneralizedRCNNTransform):
    """torchvision's transform whose postprocess pastes masks as Detectron2 does (:func:`paste_masks`)."""

    def postprocess(self, result: list[dict[str, Tensor]], image_shapes: list[tuple[int, int]],
                    original_image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        if self.training:
            return result
        for prediction, resized, original in zip(result, image_shapes, original_image_sizes):
            prediction["boxes"] = resize_boxes(prediction["boxes"], resized, original)
            if "masks" in prediction:
                prediction["masks"] = paste_masks(prediction["masks"], prediction["boxes"], original)
        return result


def build(e: Entry, **options: Any) -> MaskRCNN:
    """An untrained torchvision ``MaskRCNN`` shaped and configured like Detectron2's ``e`` (eval-ready)."""
    backbone = resnet_fpn_backbone(
        backbone_name=f"resnet{e.depth}", weights=None, norm_layer=FrozenBatchNorm2d, extra_blocks=LastLevelMaxPool()
    )
    for stage in (backbone.body.layer2, backbone.body.layer3, backbone.body.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)  # MSRA ResNet: STRIDE_IN_1X1
    settings: dict[str, Any] = dict(
        min_size=e.min_size, max_size=e.max_size,
        image_mean=[m / 255 for m in reversed(PIXEL_MEAN_BGR)], image_std=[s / 255 for s in reversed(PIXEL_STD_BGR)],
        rpn_anchor_generator=Detectron2Anchors(),
        rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=1000, rpn_nms_thresh=0.7,
        box_roi_pool=AlignedMultiScaleRoIAlign(["0", "1", "2", "3"], 7, sampling_ratio=0),
        mask_roi_pool=AlignedMultiScaleRoIAlign(["0", "1", "2", "3"], 14, sampling_ratio=0),
        box_score_thresh=0.05, box_nms_thresh=0.5, box_detections_per_img=100,
        bbox_reg_weights=(10.0, 10.0, 5.0, 5.0),
    )
    model = MaskRCNN(backbone, num_classes=len(e.classes) + 1, **{**settings, **options})
    t = model.transform
    model.transform = Detectron2Transform(t.min_size, t.max_size, t.image_mean, t.image_std)
    return model


def class_names(name: str) -> tuple[str, ...]:
    """Label index -> class name of the converted model ``name`` (index 0 is background)."""
    return ("__background__",) + entry(name).classes


def load_file(path: Path, name: str, **options: Any) -> MaskRCNN:
    """The converted model of entry ``name`` from a model-zoo ``.pkl`` at ``path``."""
    e = entry(name)
    model = build(e, **options)
    model.load_state_dict(convert(read_weights(path, e.depth, len(e.classes))), strict=True)
    return model


def load(name: str, progress: bool = True, **options: Any) -> MaskRCNN:
    """Download (once, into the hub cache) and convert Detectron2's ``name``; ``options`` go to ``MaskRCNN``.

    Detectron2 publishes no checksums (the 6 hex digits in its file names are commit ids), so the
    download is not hash-checked; :func:`read_weights` checks every name and shape instead.
    """
    e = entry(name)
    return load_file(zoo.fetch(e.url, "", filename=e.cache_name, progress=progress), name, **options)


def status(name: str) -> str:
    """``"cached"``, ``"downloadable"`` or ``"unavailable"`` for entry ``name``."""
    e = entry(name)
    if (zoo.weights_dir() / e.cache_name).exists():
        return "cached"
    return "downloadable" if zoo._reachable(e.url) else "unavailable"
