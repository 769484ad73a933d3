"""INT8 post-training quantization of an exported Mask R-CNN with NNCF, and what stays in FP32.

Static INT8 quantization maps each tensor ``x`` to 8-bit integers ``q = round(x / s) + z``. The
weights' scales come from the weights themselves (per output channel); the activations' scales
come from **calibration**: NNCF runs the model on a few hundred (here: tens of) representative
images, records each activation's range, and inserts ``FakeQuantize`` operations that the
OpenVINO CPU plugin turns into INT8 convolutions and matrix products (fast on CPUs with VNNI or
AMX dot-product units). Calibration images must look like the deployment data: held-out scenes
are for measuring, so calibration uses ToyCity *training* scenes.

Not every layer tolerates 8 bits equally. Rounding error in the backbone is averaged away by the
layers that follow; rounding error in the last layer of a head lands directly in the output. In
Mask R-CNN those are the box regressor (a box shifted by a pixel loses IoU on a 10-pixel object),
the classifier (scores decide the ranking AP integrates over), the RPN's objectness and deltas
(they decide which proposals survive NMS), and the mask logits, thresholded at 0.5 after a
sigmoid on small 28 x 28 maps. :data:`IGNORED_SCOPES` names the choices the course measures; the
week 3 chapter reads their cost from a committed benchmark.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import Tensor

#: Layers kept in FP32, by node-name regular expressions of the exported graph (names follow the
#: PyTorch module paths) and operation types. "none": NNCF's defaults quantize every Conv/MatMul.
IGNORED_SCOPES: dict[str, dict[str, list[str]]] = {
    "none": {},
    # the last layer of every head: RPN objectness and deltas, box classifier and regressor, mask logits
    "predictors": {"patterns": [r".*/rpn/head/(cls_logits|bbox_pred).*", r".*/roi_heads/box_predictor/.*",
                                r".*/roi_heads/mask_predictor/.*"]},
    # the predictors and the whole mask head (its convs, its deconvolution, the stem the course's head reads)
    "predictors_mask_head": {"patterns": [r".*/rpn/head/(cls_logits|bbox_pred).*", r".*/roi_heads/box_predictor/.*",
                                          r".*/roi_heads/mask_predictor/.*", r".*/roi_heads/mask_head/.*",
                                          r".*/backbone/stem_projection/.*"],
                             "types": ["ConvolutionBackpropData"]},
}
#: The scope the course ships (see the week 3 chapter for the measured alternatives).
DEFAULT_SCOPE = "predictors"


def quantize_int8(ov_model, calibration: Sequence[Tensor], scope: str = DEFAULT_SCOPE):
    """An INT8 copy of ``ov_model`` (an ``openvino.Model`` of :func:`course_lib.deploy.export.export_onnx`),
    calibrated on ``calibration`` images (``float32 [3, H, W]`` at the export size).

    ``scope`` names the layers kept in FP32 (:data:`IGNORED_SCOPES`). Operations without an INT8
    kernel (RoI Align, NMS, the box arithmetic) stay in FP32 whatever the scope.
    """
    import json

    import nncf

    from course_lib.deploy.export import METADATA_KEY

    if scope not in IGNORED_SCOPES:
        raise ValueError(f"unknown ignored scope {scope!r}: choose one of {', '.join(IGNORED_SCOPES)}")
    if not calibration:
        raise ValueError("INT8 quantization needs at least one calibration image")
    dataset = nncf.Dataset(list(calibration), lambda image: image.numpy().astype(np.float32))
    quantized = nncf.quantize(ov_model, dataset, subset_size=len(calibration),
                              ignored_scope=nncf.IgnoredScope(**IGNORED_SCOPES[scope], validate=False))
    metadata = json.loads(ov_model.get_rt_info([METADATA_KEY]).astype(str))
    metadata.update(int8_scope=scope, calibration_images=len(calibration), nncf=nncf.__version__)
    quantized.set_rt_info(json.dumps(metadata), [METADATA_KEY])
    return quantized
