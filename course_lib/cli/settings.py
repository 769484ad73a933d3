"""The settings of ``eval``, ``video``, ``bench`` and ``export``, declared once like :class:`TrainSettings`.

Each command makes its argparse options from these fields (``course_lib.cli.options.add_settings_arguments``),
refuses a value out of range while parsing, and records the object it ran with in the JSON it writes
(``eval --json``, ``bench --out``). What they read and write (files, the model, the dataset) are not
settings: those stay the commands' own options.
"""

from __future__ import annotations

import dataclasses

from course_lib import environment
from course_lib.deploy import eager
from course_lib.engine.settings import FRACTION, IMAGE_SIDE, NON_NEGATIVE, POSITIVE, check_fields, option

#: The runtimes a model is exported for (:data:`course_lib.deploy.variants.RUNTIMES`, which needs course_lib[deploy]).
RUNTIMES_HELP = "ort, ov_fp32, ov_bf16, ov_int8, ov_int8_bf16"


class _Checked:
    """A settings dataclass that refuses, in one line, a field out of range when it is made."""

    def __post_init__(self) -> None:
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class EvalSettings(_Checked):
    """How ``eval`` runs the model (not which model, data or images)."""

    batch_size: int = option(2, "images per forward pass", bounds=POSITIVE)


@dataclasses.dataclass(frozen=True)
class VideoSettings(_Checked):
    """How ``video`` detects and draws, and the ToyCity clip ``--toycity`` writes."""

    variant: str = option("baseline", "inference variant (course_lib.deploy.eager)", choices=tuple(eager.VARIANTS))
    runtime: str | None = option(None, "run exported: an .onnx / OpenVINO .xml file from `python -m course_lib export`, or a "
                                 f"runtime ({RUNTIMES_HELP}) with --variant's settings, exported on first use for the size "
                                 "the model sees the frames at and kept in the export cache")
    calibration: int = option(32, "ToyCity training scenes that calibrate --runtime ov_int8", bounds=POSITIVE)
    min_score: float = option(0.5, "keep, track and draw detections scoring at least this (the one threshold after "
                              "the model's own)", bounds=FRACTION)
    batch_size: int | None = option(None, "frames per forward pass (default: the variant's)", bounds=POSITIVE)
    max_frames: int | None = option(None, "annotate only the first N frames (default: all)", bounds=POSITIVE)
    pipeline: str = option("streaming", "streaming: decode and encode on their own threads, overlapping the model; "
                           "serial: every stage in turn on one thread", choices=("streaming", "serial"))
    seed: int = option(0, "ToyCity clip seed (with --toycity)", bounds=NON_NEGATIVE)
    frames: int = option(40, "ToyCity clip length (with --toycity)", bounds=POSITIVE)


@dataclasses.dataclass(frozen=True)
class BenchSettings(_Checked):
    """What ``bench`` times and how often (the numbers of scenes and runs shrink in fast mode)."""

    variants: str = option("baseline,rpn_300,rpn_100,det_20,channels_last,int8,bf16,scale_0.75,scale_0.5,batch_4,fast,fast_small,fast_bf16",
                           f"comma-separated, from: {', '.join(eager.VARIANTS)}; or runtimes (course_lib[deploy]): {RUNTIMES_HELP}, "
                           "each optionally @SETTINGS (e.g. ov_int8@fast); all are then timed interleaved")
    calibration: int = option(lambda: environment.pick(2, 64), "ToyCity training scenes that calibrate INT8 runtimes", bounds=POSITIVE)
    val: int = option(lambda: environment.pick(4, 100), "held-out ToyCity scenes for mask AP", bounds=POSITIVE)
    size: tuple[int, int] = option((128, 256), "HxW of the ToyCity scenes (the model was trained at 128x256)", bounds=IMAGE_SIDE)
    warmup: int = option(3, "untimed runs first", bounds=NON_NEGATIVE)
    repeats: int = option(lambda: environment.pick(3, 30), "timed runs", bounds=POSITIVE)
    threads: int | None = option(None, "torch CPU threads (default: torch's choice)", bounds=POSITIVE)
    batch_size: int = option(4, "images per training step (with --train-step)", bounds=POSITIVE)


@dataclasses.dataclass(frozen=True)
class ExportSettings(_Checked):
    """What ``export`` writes (runtime, fixed input size) and how it is calibrated and checked."""

    runtime: str = option("ov_fp32", "ort (ONNX file), ov_fp32, ov_bf16, ov_int8 or ov_int8_bf16 (OpenVINO IR), optionally "
                          "@SETTINGS of course_lib.deploy.eager, e.g. ov_int8@fast")
    size: tuple[int, int] = option((128, 256), "HxW of the images the export takes (fixed)", bounds=IMAGE_SIDE)
    calibration: int = option(64, "ToyCity training scenes that calibrate ov_int8", bounds=POSITIVE)
    check: int = option(4, "held-out ToyCity scenes the export is checked on", bounds=POSITIVE)
    min_agreement: float | None = option(None, "least share of confident detections (and mask IoU) reproduced; "
                                         "default 0.95 for FP32, 0.8 for INT8/bfloat16", bounds=FRACTION)

