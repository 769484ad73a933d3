"""Command line: ``python -m course_lib {train,eval,bench,video,export} ...`` (``--help`` on each)."""

from __future__ import annotations

import importlib
import sys

#: subcommand -> module whose ``cli(argv) -> int`` runs it (``module:function`` for another function)
COMMANDS = {
    "train": "course_lib.train",
    "eval": "course_lib.cli.evaluate",
    "bench": "course_lib.cli.bench",
    "video": "course_lib.video",
    "export": "course_lib.__main__:export_cli",
}


def export_cli(argv: list[str]) -> int:
    """``python -m course_lib export``: write an ONNX file or OpenVINO IR, checked against the PyTorch model."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m course_lib export", description=export_cli.__doc__.split(": ", 1)[1])
    parser.add_argument("--model", default="toycity", help="toycity (default), coco, or a checkpoint path")
    parser.add_argument("--arch", default="toycity_small", help="architecture of a checkpoint given as --model")
    parser.add_argument("--runtime", default="ov_fp32",
                        help="ort (ONNX file), ov_fp32, ov_bf16, ov_int8 or ov_int8_bf16 (OpenVINO IR), optionally @SETTINGS of "
                             "course_lib.speed, e.g. ov_int8@fast")
    parser.add_argument("--size", default="128x256", help="HxW of the images the export takes (fixed)")
    parser.add_argument("--out", required=True, help="output file: .onnx for ort, .xml (+ .bin beside it) for OpenVINO")
    parser.add_argument("--calibration", type=int, default=64, help="ToyCity training scenes that calibrate ov_int8")
    parser.add_argument("--check", type=int, default=4, help="held-out ToyCity scenes the export is checked on")
    parser.add_argument("--min-agreement", type=float, default=None,
                        help="least share of confident detections (and mask IoU) reproduced; default 0.95 for FP32, 0.8 for INT8/bfloat16")
    args = parser.parse_args(argv)
    from course_lib import deploy

    if not deploy.available():
        print("error: export needs ONNX, ONNX Runtime, OpenVINO and NNCF: pip install 'course_lib[deploy]'", file=sys.stderr)
        return 2
    import torch

    from course_lib import bench, zoo
    from course_lib.deploy import variants
    from course_lib.toycity import ToyCityDataset

    height, width = (int(v) for v in args.size.lower().split("x"))
    try:
        variant = variants.parse(args.runtime)
        if variant is None:
            raise ValueError(f"--runtime {args.runtime}: choose one of {', '.join(variants.RUNTIMES)}, optionally @SETTINGS")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model = zoo.from_command_line(args.model, args.arch, torch.device("cpu"))
    calibration = ToyCityDataset(args.calibration if variant.runtime.startswith("ov_int8") else 0, seed=0, height=height, width=width)
    check = [image for image, _ in bench.toycity_val(args.check, height, width)]
    min_agreement = args.min_agreement or (0.95 if variant.runtime in ("ort", "ov_fp32") else 0.8)
    try:
        path, agreement = variants.export_checked(model, args.runtime, args.out, height, width, check,
                                                  [calibration[i][0] for i in range(len(calibration))], min_agreement)
    except variants.ExportMismatch as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"agreement with the PyTorch model on {len(check)} held-out ToyCity scenes: {agreement['detections']:.1%} of "
          f"confident detections reproduced, mask IoU {agreement['mask_iou']:.3f}")
    print("wrote", path)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        print(__doc__.strip())
        print("commands:", ", ".join(COMMANDS))
        return 0 if not argv or argv[0] in {"-h", "--help"} else 2
    module_name, _, function = COMMANDS[argv[0]].partition(":")
    command = getattr(importlib.import_module(module_name), function or "cli")
    from course_lib.errors import UserError

    try:
        return int(command(argv[1:]) or 0)
    except UserError as error:  # a mistake in what was given: one line that says what to do, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
