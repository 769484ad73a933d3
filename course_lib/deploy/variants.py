"""Deployment variants: a runtime, a precision and the test-time settings baked into the export.

A name is ``RUNTIME`` or ``RUNTIME@SETTINGS``: ``ov_int8@fast`` is OpenVINO INT8 of the model
exported with :mod:`course_lib.deploy.eager`'s ``fast`` settings (100 proposals, 20 detections, score >=
0.2). Only settings that are constants of the exported graph combine (input scale, proposals,
detections, score threshold); memory format, autocast, dynamic INT8, ``torch.compile`` and
batching are PyTorch execution choices that a runtime makes for itself, or not at all.
:func:`build` turns a variant into a predictor with the eager model's call.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.models.detection import MaskRCNN
from torchvision.ops import box_iou

from course_lib.deploy import eager
from course_lib.deploy.export import METADATA_KEY, export_onnx, save_openvino, to_openvino
from course_lib.deploy.predictor import RuntimePredictor, onnxruntime_predictor, openvino_predictor
from course_lib.deploy.quantize import DEFAULT_SCOPE, IGNORED_SCOPES, SCOPE_DESCRIPTIONS, quantize_int8
from course_lib.structures.masks import mask_iou
from course_lib.structures.matching import gate_by_class, match_pairs

#: runtime name -> what it is
RUNTIMES = {
    "ort": "ONNX Runtime, FP32",
    "ov_fp32": "OpenVINO, FP32",
    "ov_bf16": "OpenVINO, bfloat16 (needs a CPU with bfloat16 units)",
    "ov_int8": "OpenVINO, INT8 (NNCF post-training quantization)",
    "ov_int8_bf16": "OpenVINO, INT8 (NNCF), bfloat16 for the layers kept out of INT8",
}
#: runtimes whose floating-point layers run in bfloat16 (on CPUs with bfloat16 units; others fall back to FP32)
BF16 = ("ov_bf16", "ov_int8_bf16")


@dataclass(frozen=True)
class DeployVariant:
    """``runtime`` (a key of :data:`RUNTIMES`) running the model exported with ``settings``."""

    name: str
    runtime: str
    settings: eager.Variant
    int8_scope: str = DEFAULT_SCOPE

    batch_size = 1  # one image per call: the exported graph takes one image

    def describe(self) -> str:
        precision = f", INT8 in: {SCOPE_DESCRIPTIONS[self.int8_scope]}" if self.runtime.startswith("ov_int8") else ""
        settings = "" if self.settings.name == "baseline" else f"; {self.settings.describe()}"
        return f"{RUNTIMES[self.runtime]}{precision}{settings}"


def _exportable(settings: eager.Variant) -> str | None:
    """None if ``settings`` only changes graph constants, else what it changes that an export cannot keep."""
    kept = eager.Variant(settings.name, scale=settings.scale, rpn_pre_nms=settings.rpn_pre_nms,
                         rpn_post_nms=settings.rpn_post_nms, detections=settings.detections,
                         score_thresh=settings.score_thresh)
    return None if kept == settings else settings.describe()


def parse(name: str) -> DeployVariant | None:
    """The deployment variant called ``name`` (``RUNTIME[@SETTINGS][#SCOPE]``), None if ``name`` names no
    runtime; ``ValueError`` with the choices for a runtime name with unknown or non-exportable settings.

    ``#SCOPE`` picks the INT8 layers kept in FP32 (:data:`course_lib.deploy.quantize.IGNORED_SCOPES`).
    """
    base, _, scope = name.partition("#")
    runtime, _, settings_name = base.partition("@")
    if runtime not in RUNTIMES:
        return None
    settings = eager.get(settings_name or "baseline")
    reason = _exportable(settings)
    if reason:
        raise ValueError(f"{name}: settings {settings.name!r} change more than the exported graph's constants "
                         f"({reason}); combine a runtime with: "
                         + ", ".join(n for n, v in eager.VARIANTS.items() if _exportable(v) is None))
    if scope and (not runtime.startswith("ov_int8") or scope not in IGNORED_SCOPES):
        raise ValueError(f"{name}: '#SCOPE' goes with ov_int8 runtimes only, one of {', '.join(IGNORED_SCOPES)}")
    return DeployVariant(name, runtime, settings, scope or DEFAULT_SCOPE)


def names() -> list[str]:
    """Every runtime with every exportable setting (``ort``, ``ort@fast``, ...)."""
    exportable = [n for n, v in eager.VARIANTS.items() if _exportable(v) is None]
    return [runtime if s == "baseline" else f"{runtime}@{s}" for runtime in RUNTIMES for s in exportable]


def build(model: MaskRCNN, variant: DeployVariant | str, height: int, width: int, calibration: Sequence[Tensor],
          folder: str | Path) -> tuple[RuntimePredictor, Path]:
    """Export ``model`` with the variant's settings for ``height x width`` images, load it in its runtime:
    ``(predictor, file)``, the file being the ``.onnx`` (ONNX Runtime) or the IR's ``.xml`` (OpenVINO).

    Files go to ``folder``; the runtimes read them whole, so the folder may go once this returns.
    INT8 calibrates on ``calibration``.
    """
    variant = parse(variant) if isinstance(variant, str) else variant
    if variant is None:
        raise ValueError(f"not a deployment variant: choose a runtime from {', '.join(RUNTIMES)}")
    folder = Path(folder)
    onnx_path = folder / f"{variant.settings.name}_{height}x{width}.onnx"
    with eager.apply(model, variant.settings):
        export_onnx(model, onnx_path, height, width, variant.settings.name)
    if variant.runtime == "ort":
        return onnxruntime_predictor(onnx_path), onnx_path
    ov_model = to_openvino(onnx_path)
    if variant.runtime.startswith("ov_int8"):
        ov_model = quantize_int8(ov_model, calibration, variant.int8_scope)
    if variant.runtime in BF16:
        metadata = json.loads(ov_model.get_rt_info([METADATA_KEY]).astype(str))
        ov_model.set_rt_info(json.dumps({**metadata, "inference_precision": "bf16"}), [METADATA_KEY])
    xml_path = save_openvino(ov_model, folder / f"{variant.runtime}_{variant.settings.name}_{height}x{width}.xml")
    return openvino_predictor(xml_path), xml_path


def load(path: str | Path, compiled_cache: Path | None = None) -> RuntimePredictor:
    """A predictor of an exported file: ``.onnx`` in ONNX Runtime, ``.xml`` (OpenVINO IR) in OpenVINO (compiled
    once into ``compiled_cache`` if given: :func:`course_lib.deploy.predictor.openvino_predictor`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such exported model; write one with `python -m course_lib export`")
    if path.suffix == ".onnx":
        return onnxruntime_predictor(path)
    if path.suffix == ".xml":
        return openvino_predictor(path, compiled_cache=compiled_cache)
    raise ValueError(f"{path}: expected an exported .onnx or OpenVINO .xml file")


class ExportMismatch(RuntimeError):
    """The exported model does not reproduce the PyTorch model closely enough; nothing was written."""


@torch.no_grad()
def agreement_with_eager(model: MaskRCNN, predictor: RuntimePredictor, settings: eager.Variant,
                         images: Sequence[Tensor]) -> dict[str, float]:
    """How closely ``predictor`` reproduces ``model`` run with ``settings`` on ``images``.

    ``detections``: the mean share of the eager model's confident detections (score >= 0.5) that
    the export reproduces (same class, box IoU >= 0.9, :func:`course_lib.deploy.eager.agreement`);
    ``mask_iou``: the mean IoU of the two binary masks of those detections that match.
    """
    shares, mask_ious = [], []
    with eager.apply(model, settings):
        references = [model([image])[0] for image in images]
    for reference, candidate in zip(references, (predictor([image])[0] for image in images)):
        shares.append(eager.agreement(reference, candidate))
        overlap = gate_by_class(box_iou(reference["boxes"], candidate["boxes"]), reference["labels"], candidate["labels"])
        pairs = [(i, j) for i, j in match_pairs(overlap, 0.9) if reference["scores"][i] >= 0.5]
        if pairs:
            rows, cols = (list(side) for side in zip(*pairs))
            mask_ious += mask_iou(reference["masks"][rows], candidate["masks"][cols]).diagonal().tolist()
    return {"detections": float(np.mean(shares)), "mask_iou": float(np.mean(mask_ious)) if mask_ious else 1.0}


def export_checked(model: MaskRCNN, name: str, out: str | Path, height: int, width: int, check_images: Sequence[Tensor],
                   calibration: Sequence[Tensor] = (), min_agreement: float = 0.9) -> tuple[Path, dict[str, float]]:
    """Export ``model`` as runtime variant ``name`` to ``out`` (``.onnx`` for ``ort``, ``.xml`` + ``.bin`` for
    OpenVINO) after checking it against the PyTorch model on ``check_images``; ``(path, agreement)``.

    Files are written in a temporary folder next to ``out`` and renamed into place only when both
    agreement numbers (:func:`agreement_with_eager`) reach ``min_agreement``; otherwise
    :class:`ExportMismatch` is raised and nothing at ``out`` changes.
    """
    variant = parse(name)
    if variant is None:
        raise ValueError(f"{name!r} is not a runtime: choose one of {', '.join(RUNTIMES)} (optionally @SETTINGS)")
    out = Path(out).with_suffix(".onnx" if variant.runtime == "ort" else ".xml")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.stem}.") as folder:
        predictor, path = build(model, variant, height, width, calibration, folder)
        agreement = agreement_with_eager(model, predictor, variant.settings, check_images)
        if min(agreement.values()) < min_agreement:
            raise ExportMismatch(f"{name}: the export reproduces {agreement['detections']:.0%} of the PyTorch model's confident "
                                 f"detections (mask IoU {agreement['mask_iou']:.2f}) on {len(check_images)} images, under "
                                 f"--min-agreement {min_agreement}; nothing written")
        if path.suffix == ".xml":
            os.replace(path.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(path, out)
    return out, agreement
