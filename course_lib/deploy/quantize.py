"""INT8 post-training quantization of an exported Mask R-CNN with NNCF, and what stays in FP32.

Static INT8 quantization maps each tensor ``x`` to 8-bit integers ``q = round(x / s) + z``. The
weights' scales come from the weights themselves (per output channel); the activations' scales
come from **calibration**: NNCF runs the model on a few hundred (here: tens of) representative
images, records each activation's range, and inserts ``FakeQuantize`` operations that the
OpenVINO CPU plugin turns into INT8 convolutions and matrix products (fast on CPUs with VNNI or
AMX dot-product units). Calibration images must look like the deployment data: held-out scenes
are for measuring, so calibration uses ToyCity *training* scenes.

What NNCF quantizes by default is more than the layers. It places quantizers on the inputs of
every operation its CPU configuration allows and moves them along the graph, and in an exported
Mask R-CNN the graph also holds the *box arithmetic*: anchor and proposal decoding, the clipping
and rescaling of boxes, the level mapper of the RoI poolers (a square root of box areas), the
reshapes around GroupNorm. Eight bits over a coordinate range of a few hundred pixels are steps of
a pixel or more, on objects a few pixels wide: on the ToyCity model, NNCF's defaults cost more
mask AP than any test-time setting does, while quantizing only the convolutions and matrix products
keeps it (``course_lib/assets/results/deploy_cpu.json`` holds both; the week 3 chapter reads it).

So the default scope, ``"layers"``, leaves out every operation type but the layers. The
alternatives stay measurable: ``"nncf_defaults"`` ignores nothing, ``"layers_but_predictors"``
also keeps the last layer of every head (RPN objectness and deltas, box classifier and regressor,
mask logits) in FP32, where rounding lands directly in the output.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
from torch import Tensor

from course_lib.deploy.export import METADATA_KEY
from course_lib.utils.signal_stack import kept_signal_stack

#: Operation types that compute on coordinates, indices or shapes rather than features: kept in floating point.
ARITHMETIC = ["Add", "Subtract", "Multiply", "Divide", "Sqrt", "Gather", "ScatterElementsUpdate", "ShapeOf", "Unsqueeze",
              "Squeeze", "Reshape", "Concat", "VariadicSplit", "Interpolate", "MaxPool"]
#: Last layer of every head, by node-name regular expressions (the exported names follow the module paths).
PREDICTORS = [r".*/rpn/head/(cls_logits|bbox_pred).*", r".*/roi_heads/box_predictor/.*", r".*/roi_heads/mask_predictor/.*"]
#: What stays out of INT8, as arguments of ``nncf.IgnoredScope``.
IGNORED_SCOPES: dict[str, dict[str, list[str]]] = {
    "nncf_defaults": {},
    "layers": {"types": ARITHMETIC},
    "layers_but_predictors": {"types": ARITHMETIC, "patterns": PREDICTORS},
}
#: The scope the course ships: only the convolutions and matrix products in INT8.
DEFAULT_SCOPE = "layers"
#: What each scope makes INT8, in words (the deploy table's labels read "INT8 in: ...").
SCOPE_DESCRIPTIONS = {
    "nncf_defaults": "NNCF's default places, box arithmetic included",
    "layers": "convolutions and matrix products only",
    "layers_but_predictors": "convolutions and matrix products but each head's last layer",
}


def quantize_int8(ov_model, calibration: Sequence[Tensor], scope: str = DEFAULT_SCOPE):
    """An INT8 copy of ``ov_model`` (an ``openvino.Model`` of :func:`course_lib.deploy.export.export_onnx`),
    calibrated on ``calibration`` images (``float32 [3, H, W]`` at the export size).

    ``scope`` names what stays in floating point (:data:`IGNORED_SCOPES`). Operations NNCF never
    quantizes (RoI Align, NMS, TopK, the sigmoid) stay in floating point whatever the scope.
    """
    import nncf

    if scope not in IGNORED_SCOPES:
        raise ValueError(f"unknown ignored scope {scope!r}: choose one of {', '.join(IGNORED_SCOPES)}")
    if not calibration:
        raise ValueError("INT8 quantization needs at least one calibration image")
    dataset = nncf.Dataset(list(calibration), lambda image: image.numpy().astype(np.float32))
    with kept_signal_stack():  # NNCF compiles models to collect statistics: see course_lib.utils.signal_stack
        quantized = nncf.quantize(ov_model, dataset, subset_size=len(calibration),
                                  ignored_scope=nncf.IgnoredScope(**IGNORED_SCOPES[scope], validate=False))
    metadata = json.loads(ov_model.get_rt_info([METADATA_KEY]).astype(str))
    metadata.update(int8_scope=scope, calibration_images=len(calibration), nncf=nncf.__version__)
    quantized.set_rt_info(json.dumps(metadata), [METADATA_KEY])
    return quantized
