"""Inference variants: named, one-line-described, reversible changes that trade accuracy for speed.

A :class:`Variant` bundles settings of a built torchvision Mask R-CNN that matter at test time:

* input size: the transform's ``min_size``/``max_size`` (``scale`` multiplies the model's own);
  the backbone's cost grows with the number of pixels, so this is the big lever,
* RPN proposals kept before/after NMS (``rpn._pre_nms_top_n['testing']``, ``_post_nms_top_n``):
  every proposal goes through the box head,
* detections per image and their score threshold: every detection goes through the mask head and
  gets pasted at full image resolution,
* ``channels_last`` memory format for the convolutions,
* autocast to float16 (CUDA) or bfloat16 (CPU),
* INT8 dynamic quantization of the ``nn.Linear`` layers (the box head's MLP) on the CPU,
* ``torch.compile`` of the backbone,
* frames per batch (used by the benchmark and the video reader; the model itself does not change).

``with apply(model, VARIANTS['rpn_300']): model(images)`` runs with the variant and restores the
exact previous configuration on exit.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn
from torch.ao.quantization import quantize_dynamic
from torchvision.models.detection import MaskRCNN
from torchvision.ops import box_iou

from course_lib.structures.matching import gate_by_class, match_pairs


@dataclass(frozen=True)
class Variant:
    """A test-time configuration; ``None``/``False`` fields keep the model's own setting."""

    name: str
    scale: float | None = None  # multiplies the transform's min_size and max_size
    rpn_pre_nms: int | None = None  # proposals per FPN level going into NMS
    rpn_post_nms: int | None = None  # proposals per image after NMS
    detections: int | None = None  # detections per image (roi_heads.detections_per_img)
    score_thresh: float | None = None  # roi_heads.score_thresh
    channels_last: bool = False
    autocast: str | None = None  # "float16" (CUDA) or "bfloat16"
    int8: bool = False  # dynamic INT8 quantization of nn.Linear layers (CPU)
    compile: bool = False  # torch.compile the backbone
    batch_size: int = 1  # frames per forward call

    def describe(self) -> str:
        """One line saying what the variant changes, e.g. ``"RPN proposals 300 pre-NMS / 300 post-NMS"``."""
        parts = []
        if self.scale is not None:
            parts.append(f"input size x{self.scale:g}")
        if self.rpn_pre_nms is not None or self.rpn_post_nms is not None:
            parts.append(f"RPN proposals {self.rpn_pre_nms or 'model'} pre-NMS / {self.rpn_post_nms or 'model'} post-NMS")
        if self.detections is not None:
            parts.append(f"at most {self.detections} detections")
        if self.score_thresh is not None:
            parts.append(f"score >= {self.score_thresh:g}")
        if self.channels_last:
            parts.append("channels_last memory format")
        if self.autocast:
            parts.append(f"{self.autocast} autocast")
        if self.int8:
            parts.append("INT8 dynamic quantization of Linear layers")
        if self.compile:
            parts.append("torch.compile(backbone)")
        if self.batch_size > 1:
            parts.append(f"{self.batch_size} frames per batch")
        return ", ".join(parts) or "the model as trained (no change)"

    def supported(self, device: torch.device) -> str | None:
        """None if the variant can run on ``device``, else the reason it cannot."""
        if self.autocast == "float16" and device.type != "cuda":
            return "float16 autocast needs a CUDA GPU (on a CPU, float16 matmuls are emulated and slow)"
        if self.int8 and device.type != "cpu":
            return "dynamic INT8 quantization runs on the CPU only (fbgemm/qnnpack kernels)"
        return None


#: The variants the course measures. Proposal counts follow the roadmap's 2000/1000 -> 500 -> 300
#: (at test time torchvision's R50 keeps 1000; the ToyCity model already keeps 500 / 300).
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant("baseline"),
        Variant("scale_0.75", scale=0.75),
        Variant("scale_0.5", scale=0.5),
        Variant("rpn_300", rpn_pre_nms=300, rpn_post_nms=300),
        Variant("rpn_100", rpn_pre_nms=100, rpn_post_nms=100),
        Variant("det_20", detections=20, score_thresh=0.2),
        Variant("channels_last", channels_last=True),
        Variant("bf16", autocast="bfloat16"),
        Variant("fp16", autocast="float16"),
        Variant("int8", int8=True),
        Variant("compile", compile=True),
        Variant("batch_4", batch_size=4),
        # The combination that pays on the ToyCity model (chosen with `bench`, see Week 3):
        Variant("fast", rpn_pre_nms=100, rpn_post_nms=100, detections=20, score_thresh=0.2),
        Variant("fast_small", scale=0.75, rpn_pre_nms=100, rpn_post_nms=100, detections=20, score_thresh=0.2),
        # bfloat16 pays only on CPUs with bf16 units (Intel AMX / AVX512-BF16, recent ARM); elsewhere it is slower.
        Variant("fast_bf16", rpn_pre_nms=100, rpn_post_nms=100, detections=20, score_thresh=0.2, channels_last=True,
                autocast="bfloat16"),
    ]
}


def get(name: str) -> Variant:
    """The variant called ``name`` (see :data:`VARIANTS`); a clear error for unknown names."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}: choose one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


def configuration(model: MaskRCNN) -> dict:
    """The test-time settings a variant may change, as plain values (to compare before/after)."""
    first = next(model.backbone.parameters())
    return {
        "min_size": tuple(model.transform.min_size),
        "max_size": model.transform.max_size,
        "rpn_pre_nms": dict(model.rpn._pre_nms_top_n),
        "rpn_post_nms": dict(model.rpn._post_nms_top_n),
        "detections": model.roi_heads.detections_per_img,
        "score_thresh": model.roi_heads.score_thresh,
        "channels_last": first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous(),
        "forward": model.__dict__.get("forward"),
        "backbone": model.backbone,
        "roi_heads": model.roi_heads,
    }


@contextlib.contextmanager
def apply(model: MaskRCNN, variant: Variant | str) -> Iterator[MaskRCNN]:
    """Run ``model`` with ``variant`` inside the ``with`` block; restore everything on exit.

    Raises ``RuntimeError`` (with the reason) for a variant the model's device cannot run.
    ``batch_size`` is not a model setting: the caller batches its frames.
    """
    variant = get(variant) if isinstance(variant, str) else variant
    device = next(model.parameters()).device
    reason = variant.supported(device)
    if reason:
        raise RuntimeError(f"variant {variant.name!r} cannot run on {device}: {reason}")
    with contextlib.ExitStack() as undo:
        if variant.scale is not None:
            min_size, max_size = model.transform.min_size, model.transform.max_size
            model.transform.min_size = tuple(round(s * variant.scale) for s in min_size)
            model.transform.max_size = round(max_size * variant.scale)
            undo.callback(_set, model.transform, min_size=min_size, max_size=max_size)
        for attribute, value in (("_pre_nms_top_n", variant.rpn_pre_nms), ("_post_nms_top_n", variant.rpn_post_nms)):
            if value is not None:
                saved = dict(getattr(model.rpn, attribute))
                getattr(model.rpn, attribute)["testing"] = value
                undo.callback(getattr(model.rpn, attribute).update, saved)
        for attribute, value in (("detections_per_img", variant.detections), ("score_thresh", variant.score_thresh)):
            if value is not None:
                undo.callback(_set, model.roi_heads, **{attribute: getattr(model.roi_heads, attribute)})
                setattr(model.roi_heads, attribute, value)
        if variant.channels_last:
            model.to(memory_format=torch.channels_last)
            undo.callback(model.to, memory_format=torch.contiguous_format)
        if variant.int8:
            original = model.roi_heads
            model.roi_heads = quantize_linear_int8(original)
            undo.callback(setattr, model, "roi_heads", original)
        if variant.compile:
            original = model.backbone
            model.backbone = torch.compile(original)
            undo.callback(setattr, model, "backbone", original)
        if variant.autocast:
            _wrap_forward_in_autocast(model, device.type, getattr(torch, variant.autocast))
            undo.callback(model.__dict__.pop, "forward")
        yield model


def _set(obj: object, **values) -> None:
    for name, value in values.items():
        setattr(obj, name, value)


def _wrap_forward_in_autocast(model: nn.Module, device_type: str, dtype: torch.dtype) -> None:
    """Shadow ``model.forward`` with an autocast version (removed by deleting the instance attribute)."""
    forward = model.forward

    def autocast_forward(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            outputs = forward(*args, **kwargs)
        # Detections leave in float32 so that downstream code (pasting, metrics) does not change.
        return [{k: v.float() if v.is_floating_point() else v for k, v in o.items()} for o in outputs]

    model.forward = autocast_forward


def quantize_linear_int8(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose ``nn.Linear`` layers use INT8 weights and dynamically quantized inputs.

    Only Linear layers: in Mask R-CNN those are the box head's two 1024-wide (256 in the ToyCity
    model) fully connected layers and the box predictor. Convolutions would need static
    quantization with calibration. ``torch.ao.quantization`` is deprecated in favour of the
    ``torchao`` package; its dynamic quantization still works and needs no extra dependency.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=False)



def agreement(reference: dict, candidate: dict, min_score: float = 0.5, iou: float = 0.9) -> float:
    """Share of ``reference``'s confident detections that ``candidate`` reproduces (1.0 if there are none).

    A detection (score >= ``min_score``) is reproduced when a candidate detection of the same class
    overlaps it with box IoU >= ``iou``, one-to-one (Hungarian matching). This is how the tests
    state "a variant's outputs stay close to the baseline's".
    """
    ref = reference["scores"] >= min_score
    cand = candidate["scores"] >= min_score * 0.5  # a detection may drift a little below the threshold
    if not ref.any():
        return 1.0
    overlap = gate_by_class(box_iou(reference["boxes"][ref].float(), candidate["boxes"][cand].float()),
                            reference["labels"][ref], candidate["labels"][cand])
    return len(match_pairs(overlap, iou)) / int(ref.sum())
