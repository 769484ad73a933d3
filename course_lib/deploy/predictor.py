"""Exported models behind the eager model's call: ``predictor([image, ...]) -> [{"boxes", "labels", "scores", "masks"}, ...]``.

A :class:`RuntimePredictor` runs an exported graph (:mod:`course_lib.deploy.export`) in ONNX
Runtime or OpenVINO and pastes its 28 x 28 masks into the full image with the model's own paste,
so that everything downstream (``course_lib.deploy.benchmark``'s AP evaluation, the video demo, the tracker)
takes it in place of the PyTorch model. Both runtimes get the same thread count as torch
(``torch.get_num_threads()``), so that a comparison on one thread is one thread on both sides.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.models.detection.transform import resize_boxes

from course_lib.deploy.export import INPUT, METADATA_KEY, OUTPUTS
from course_lib.errors import BadInput
from course_lib.modeling.paste import paste_masks, resized_pixel_offset
from course_lib.utils.signal_stack import kept_signal_stack


def paste_detections(outputs: Sequence[np.ndarray], metadata: dict, size: tuple[int, int] | None = None) -> dict[str, Tensor]:
    """The eager model's output dict from the graph's ``(boxes, labels, scores, masks [N, 1, M, M])``.

    Boxes are scaled and masks pasted at ``size`` (``(H, W)``; default: the export's input size),
    for an image that was resized to the input size, as the eager model's transform does: the
    course's exact paste (:func:`course_lib.modeling.paste.paste_masks`, with the resize's pixel offset)
    or torchvision's.
    """
    boxes, labels, scores, masks = (torch.from_numpy(np.asarray(o)) for o in outputs)
    height, width = size or metadata["input_size"]
    boxes = resize_boxes(boxes, tuple(metadata["input_size"]), (height, width))
    if metadata["paste"] == "course_lib":
        offset = resized_pixel_offset(tuple(metadata["resized_size"]), (height, width))
        pasted = paste_masks(masks[:, 0], boxes, height, width, pixel_offset=offset)[:, None]
    else:
        pasted = paste_masks_in_image(masks, boxes, (height, width), padding=1)
    return {"boxes": boxes, "labels": labels.long(), "scores": scores, "masks": pasted}


def _checked_metadata(text: str) -> dict:
    """The export's metadata (JSON), with the keys :func:`paste_detections` reads."""
    metadata = json.loads(text)
    missing = {"input_size", "paste"} - set(metadata)
    if missing:
        raise KeyError(f"metadata lacks {', '.join(sorted(missing))}")
    return metadata


def _not_an_export(path: object, error: Exception) -> BadInput:
    detail = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return BadInput(f"{path} is not a readable export of `python -m course_lib export` ({detail[:160]}): export it again")


class RuntimePredictor:
    """Calls ``run(image [3, H, W] float32) -> (boxes, labels, scores, masks)`` per image and pastes the masks.

    ``metadata`` is the export's (:func:`course_lib.deploy.export.export_metadata`): it fixes the
    input size, which every image must have.
    """

    device = torch.device("cpu")

    def __init__(self, run: Callable[[np.ndarray], Sequence[np.ndarray]], metadata: dict, description: str) -> None:
        self.run, self.metadata, self.description = run, metadata, description

    def eval(self) -> "RuntimePredictor":
        return self  # already an inference-only graph; here so callers can treat it like a model

    def __call__(self, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        expected = tuple(self.metadata["input_size"])
        results = []
        for image in images:
            if tuple(image.shape[-2:]) != expected:
                raise ValueError(f"this export takes {expected[0]}x{expected[1]} images, got "
                                 f"{image.shape[-2]}x{image.shape[-1]}: export again for that size (--size HxW)")
            results.append(paste_detections(self.run(image.detach().cpu().float().contiguous().numpy()), self.metadata))
        return results

    def detect_frames(self, frames: Sequence[np.ndarray], clock) -> list[dict[str, Tensor]]:
        """:class:`course_lib.tracking.pipeline.Detect` of this export: each ``[H, W, 3]`` uint8 frame
        resized to the export's input size (the model's trained size, bilinear like its transform),
        run, and its masks pasted at the frame's size; ``preprocess``, ``model`` and ``paste`` timed on ``clock``."""
        size = tuple(self.metadata["input_size"])
        results = []
        for frame in frames:
            if abs(frame.shape[0] * size[1] / frame.shape[1] - size[0]) > 1:  # more than the rounding of a resize
                raise BadInput(f"this export takes {size[0]}x{size[1]} images, and {frame.shape[0]}x{frame.shape[1]} frames "
                               "would be squashed into it: export for the frames' shape (--size HxW)")
            with clock("preprocess"):
                image = torch.from_numpy(frame).permute(2, 0, 1).float().div_(255)
                if tuple(image.shape[-2:]) != size:
                    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
                image = image.contiguous().numpy()
            with clock("model"):
                outputs = self.run(image)
            with clock("paste"):
                results.append(paste_detections(outputs, self.metadata, frame.shape[:2]))
        return results


def onnxruntime_predictor(path: str | Path, threads: int | None = None) -> RuntimePredictor:
    """An ONNX Runtime CPU session of an exported ``.onnx`` file, on ``threads`` (default: torch's) threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    try:  # ONNX Runtime's exceptions (InvalidProtobuf, Fail, ...) derive from Exception alone
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        metadata = _checked_metadata(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    except Exception as error:
        raise _not_an_export(path, error) from None

    def run(image: np.ndarray) -> list[np.ndarray]:
        return session.run(list(OUTPUTS), {INPUT: image})

    return RuntimePredictor(run, metadata, f"ONNX Runtime {ort.__version__} (CPU), FP32")


def openvino_predictor(model, threads: int | None = None, compiled_cache: Path | None = None) -> RuntimePredictor:
    """An OpenVINO CPU predictor of an IR file (``.xml``), an ``.onnx`` file or an ``openvino.Model``.

    ``compiled_cache``: a folder where OpenVINO keeps the model compiled for this CPU (its ``CACHE_DIR``,
    keyed by OpenVINO on the model, the settings and the device), so that a later run loads it instead of
    compiling again (on a 2-core CPU, a third of a second instead of more than half a second).

    The plugin's inference precision for the floating-point layers is the export's
    ``inference_precision``: ``"f32"`` (default), or ``"bf16"`` on CPUs with bfloat16 units (AMX,
    AVX512-BF16), which the plugin may otherwise pick on its own; INT8 layers run in INT8 either way.
    """
    import openvino as ov

    core = ov.Core()
    source = model
    try:
        if not isinstance(model, ov.Model):
            model = core.read_model(str(model))
        metadata = _checked_metadata(model.get_rt_info([METADATA_KEY]).astype(str))
    except Exception as error:  # OpenVINO reports a damaged file as a RuntimeError, a missing key as anything
        raise _not_an_export(source, error) from None
    precision = metadata.get("inference_precision", "f32")
    with kept_signal_stack():  # the CPU plugin's own signal stack is freed with the compiled model
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
                                                     "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                                                     **({"CACHE_DIR": str(compiled_cache)} if compiled_cache else {})})
    request = compiled.create_infer_request()
    outputs = [compiled.output(name) for name in OUTPUTS]

    def run(image: np.ndarray) -> list[np.ndarray]:
        result = request.infer({INPUT: image})
        return [result[output] for output in outputs]

    layers = f"INT8 + {precision}" if metadata.get("int8_scope") else precision
    return RuntimePredictor(run, metadata, f"OpenVINO {ov.__version__.split('-')[0]} (CPU), {layers}")
