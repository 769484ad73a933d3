"""Fast inference: trade accuracy for speed, export and quantize, and measure both (timing: :mod:`course_lib.utils.timing`).

* :mod:`course_lib.deploy.eager`: inference variants of the eager model (fewer proposals, bf16, ...),
* :mod:`course_lib.deploy.benchmark`: eager and deployed variants timed interleaved, side by side, with their mask AP,
* :mod:`course_lib.deploy.export`: the traceable model, ONNX export, OpenVINO conversion and IR files,
* :mod:`course_lib.deploy.quantize`: INT8 post-training quantization with NNCF, and the layers kept in FP32,
* :mod:`course_lib.deploy.predictor`: exported graphs behind the eager model's call (the masks pasted in torch),
* :mod:`course_lib.deploy.variants`: runtime x precision x test-time settings, named for ``bench`` and ``video``,
* :mod:`course_lib.deploy.cache`: exported and calibrated models kept on disk between runs.

The runtimes are an optional extra: ``pip install course_lib[deploy]``.
"""

import importlib.util


def available() -> bool:
    """True if ONNX, ONNX Runtime, OpenVINO and NNCF are installed (``pip install course_lib[deploy]``)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime", "openvino", "nncf"))
