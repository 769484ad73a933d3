"""Export a torchvision Mask R-CNN to ONNX and OpenVINO IR: one graph from image to 28 x 28 masks.

The exported graph takes one ``float32 [3, H, W]`` image in ``[0, 1]`` (``H x W`` fixed at export
time) and returns ``boxes [N, 4]`` (in the input image's pixels), ``labels [N]``, ``scores [N]``
and ``masks [N, 1, 28, 28]`` (probabilities in each box's frame). Everything up to there is in the
graph: the transform's normalisation and resize, backbone, FPN, RPN with its NMS, RoI Align,
both heads, the per-class NMS and the box rescaling. The last step, pasting each 28 x 28 map into
the full image, stays outside (:mod:`course_lib.deploy.predictor`), in torch, with the model's own
paste: :func:`course_lib.modeling.paste.paste_masks` computes only the pixels of each box, a loop whose
length and slice sizes depend on the detections, which a trace would freeze at export time.

Two swaps make the model traceable, with the same results:

* :class:`course_lib.scratch.roi.SeparableMultiScaleRoIAlign` (RoI Align as matrix products, built for
  fast training) builds its matrices per box in Python, so a trace bakes in the number of boxes;
  its parent, torchvision's ``MultiScaleRoIAlign``, calls the RoI Align kernel, which exports as
  the ONNX ``RoiAlign`` operator.
* ``dynamo=True`` export stops at a data-dependent branch in ``torchvision.ops.batched_nms``;
  the TorchScript-based exporter (``dynamo=False``, opset 17) traces it.

The test-time settings of :mod:`course_lib.deploy.eager` (proposals, detections, score threshold, input
scale) are constants of the graph: apply them (``with speed.apply(model, "fast")``) before export.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.transform import resize_boxes

from course_lib.modeling.paste import ExactPasteTransform
from course_lib.scratch.roi import with_kernel_roi_align
from course_lib.utils.atomic import atomic_path

#: The exported graph's input and output names.
INPUT = "image"
#: Key under which the export's facts (:func:`export_metadata`) travel inside the ONNX and IR files.
METADATA_KEY = "course_lib"
OUTPUTS = ("boxes", "labels", "scores", "masks")
OPSET = 17


class ExportableMaskRCNN(nn.Module):
    """``image [3, H, W] -> (boxes [N, 4], labels [N], scores [N], masks [N, 1, M, M])`` of a Mask R-CNN in eval mode.

    torchvision's ``MaskRCNN.forward`` up to (not including) the paste; the boxes are rescaled
    from the resized image to the input image as ``transform.postprocess`` does.
    """

    def __init__(self, model: MaskRCNN) -> None:
        super().__init__()
        self.model = traceable_copy(model)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        original_size = (image.shape[-2], image.shape[-1])
        images, _ = self.model.transform([image])
        features = self.model.backbone(images.tensors)
        proposals, _ = self.model.rpn(images, features)
        detections, _ = self.model.roi_heads(features, proposals, images.image_sizes)
        detection = detections[0]
        boxes = resize_boxes(detection["boxes"], images.image_sizes[0], original_size)
        return boxes, detection["labels"], detection["scores"], detection["masks"]


def traceable_copy(model: MaskRCNN) -> MaskRCNN:
    """A copy of ``model`` in eval mode whose separable RoI poolers are torchvision's kernel pooler."""
    return with_kernel_roi_align(copy.deepcopy(model).eval().float())


@torch.no_grad()
def resized_size(model: MaskRCNN, height: int, width: int) -> tuple[int, int]:
    """The size ``model``'s transform resizes a ``height x width`` image to: the size its backbone sees
    (the size it was trained at, for a model trained at one size)."""
    transform = copy.deepcopy(model.transform).eval()
    return tuple(transform([torch.zeros(3, height, width, device=next(model.parameters()).device)])[0].image_sizes[0])


def export_metadata(model: MaskRCNN, height: int, width: int, settings: str = "baseline") -> dict:
    """What a runtime needs besides the graph: input size, the size the graph resizes it to, and the paste."""
    resized = resized_size(model, height, width)
    return {"input_size": [height, width], "resized_size": list(resized), "settings": settings,
            "paste": "course_lib" if isinstance(model.transform, ExactPasteTransform) else "torchvision",
            "torch": torch.__version__, "opset": OPSET}


@torch.no_grad()
def export_onnx(model: MaskRCNN, path: str | Path, height: int, width: int, settings: str = "baseline") -> Path:
    """Write ``model`` (with its current test-time settings, named ``settings``) as an ONNX file for
    ``height x width`` images; :func:`export_metadata` goes into the file's metadata.

    The file is self-contained (weights inside) and written atomically.
    """
    import onnx

    metadata = export_metadata(model, height, width, settings)
    module = ExportableMaskRCNN(model).cpu()
    example = torch.rand(3, height, width)

    with atomic_path(path) as temporary:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings on shape arithmetic the graph keeps symbolic
            torch.onnx.export(module, (example,), str(temporary), dynamo=False, opset_version=OPSET,
                              input_names=[INPUT], output_names=list(OUTPUTS),
                              dynamic_axes={name: {0: "detections"} for name in OUTPUTS})
        graph = onnx.load(str(temporary))
        onnx.helper.set_model_props(graph, {METADATA_KEY: json.dumps(metadata)})
        onnx.save(graph, str(temporary))
    return Path(path)


def onnx_metadata(path: str | Path) -> dict:
    """The :func:`export_metadata` stored in an exported ONNX file."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if METADATA_KEY not in props:
        raise ValueError(f"{path} was not written by course_lib's export: export it with `python -m course_lib export`")
    return json.loads(props[METADATA_KEY])


def to_openvino(onnx_path: str | Path):
    """The ``openvino.Model`` of an exported ONNX file, carrying its metadata."""
    import openvino as ov

    ov_model = ov.convert_model(str(onnx_path))
    ov_model.set_rt_info(json.dumps(onnx_metadata(onnx_path)), [METADATA_KEY])
    return ov_model


def save_openvino(ov_model, path: str | Path) -> Path:
    """Write an ``openvino.Model`` as IR: ``path`` (``.xml``, the graph) and ``.bin`` (the weights), each renamed into place."""
    import openvino as ov

    path = Path(path).with_suffix(".xml")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.parent / f".{path.stem}.partial.xml"
    ov.save_model(ov_model, str(partial), compress_to_fp16=False)
    os.replace(partial.with_suffix(".bin"), path.with_suffix(".bin"))  # weights first: the .xml reads them by name
    os.replace(partial, path)
    return path
