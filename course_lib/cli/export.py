"""``python -m course_lib export``: write a trained model as ONNX or OpenVINO IR."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from course_lib import deploy, zoo
from course_lib.cli import options
from course_lib.data.toycity import ToyCityDataset
from course_lib.deploy import benchmark, variants
from course_lib.cli.settings import ExportSettings
from course_lib.errors import BadInput, MissingPackage
from course_lib.utils.outputs import check_output


def cli(argv: list[str]) -> int:
    """``python -m course_lib export``: write an ONNX file or OpenVINO IR, checked against the PyTorch model."""
    parser = options.ArgumentParser(prog="python -m course_lib export", description=cli.__doc__.split(": ", 1)[1])
    options.add_model_arguments(parser)
    parser.add_argument("--out", required=True, help="output file: .onnx for ort, .xml (+ .bin beside it) for OpenVINO")
    options.add_settings_arguments(parser, ExportSettings)
    args = parser.parse_args(argv)
    settings = options.settings_from_arguments(ExportSettings, args)
    if not deploy.available():
        raise MissingPackage("export needs ONNX, ONNX Runtime, OpenVINO and NNCF: pip install 'course_lib[deploy]'")
    height, width = settings.size
    try:
        variant = variants.parse(settings.runtime)
    except ValueError as error:  # a runtime with settings it cannot export
        raise BadInput(f"--runtime {error}") from None
    if variant is None:
        raise BadInput(f"--runtime {settings.runtime}: choose one of {', '.join(variants.RUNTIMES)}, optionally @SETTINGS")
    # what export_checked writes: the runtime's suffix, and OpenVINO's weights beside the .xml
    written = [Path(args.out).with_suffix(".onnx")] if variant.runtime == "ort" else [Path(args.out).with_suffix(s) for s in (".xml", ".bin")]
    for target in written:
        check_output(target, "--out", inputs=(args.model,))
    model = zoo.from_command_line(args.model, args.arch, torch.device("cpu"))
    calibration = ToyCityDataset(settings.calibration if variant.runtime.startswith("ov_int8") else 0, seed=0, height=height, width=width)
    check = [image for image, _ in benchmark.toycity_val(settings.check, height, width)]
    min_agreement = settings.min_agreement if settings.min_agreement is not None else (0.95 if variant.runtime in ("ort", "ov_fp32") else 0.8)
    try:
        path, agreement = variants.export_checked(model, settings.runtime, args.out, height, width, check,
                                                  [calibration[i][0] for i in range(len(calibration))], min_agreement)
    except variants.ExportMismatch as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"agreement with the PyTorch model on {len(check)} held-out ToyCity scenes: {agreement['detections']:.1%} of "
          f"confident detections reproduced, mask IoU {agreement['mask_iou']:.3f}")
    print("wrote", path)
    return 0
