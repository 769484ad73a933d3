"""Settings declared once: each option's type, allowed values, default and help (the other commands'
settings objects, made with the same :func:`option`, are in :mod:`course_lib.cli.settings`).

:class:`TrainSettings` is what ``python -m course_lib train`` and ``data_scripts/train_toycity.py``
parse their options into (``course_lib.cli.options.add_settings_arguments`` makes the argparse
options from its fields), what the recipes fill in (:data:`course_lib.engine.recipes.RECIPES`),
and what the ToyCity manifest records. A value out of range is refused when the object is made, in one line that names the
option: ``--grad-clip -1`` would train uphill, ``--steps 0`` would save random weights.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from course_lib.data.sampling import THRESHOLD_HELP
from course_lib.errors import BadInput

#: The learning-rate schedules after the warmup (see :func:`course_lib.engine.recipes.lr_factor`).
SCHEDULES = ("cosine", "linear", "step")
#: The ``--amp`` choices, as :func:`course_lib.engine.recipes.amp_setting`'s ``amp`` (``None``: it chooses).
AMP_OPTIONS = {"auto": None, "on": True, "off": False}


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The numbers an option allows: finite, at least ``low`` (above it if ``low_open``), at most ``high``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def problem(self, value: float) -> str | None:
        """What is wrong with ``value``, or None."""
        if not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'above' if self.low_open else 'at least'} {self.low:g}, got {value:g}"
        if self.high is not None and value > self.high:
            return f"must be at most {self.high:g}, got {value:g}"
        return None


def option(default: Any, help: str, *, bounds: Bounds | None = None, choices: tuple[str, ...] | None = None,
           aliases: tuple[str, ...] = (), required: bool = False) -> Any:
    """A settings field: its default (a function is called for it when the settings are made: a default that
    follows fast mode), help, allowed values (``bounds`` for numbers and each side of a size, ``choices`` for
    words), older command-line spellings that recorded commands still use (``aliases``), and whether the
    user must give it when the default is None (``required``)."""
    metadata = {"help": help, "bounds": bounds, "choices": choices, "aliases": aliases, "required": required}
    if callable(default):
        return dataclasses.field(default_factory=default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag(name: str) -> str:
    """The command-line spelling of a field: ``warmup_steps`` -> ``--warmup-steps``."""
    return "--" + name.replace("_", "-")


def check_value(field: dataclasses.Field, value: Any) -> str | None:
    """What is wrong with ``value`` for ``field`` (range or choice), or None."""
    if field.metadata["choices"] is not None and value not in field.metadata["choices"]:
        return f"must be one of {', '.join(field.metadata['choices'])}, got {value!r}"
    if field.metadata["bounds"] is not None and value is not None:
        for number in value if isinstance(value, tuple) else (value,):  # a size: each side
            problem = field.metadata["bounds"].problem(number)
            if problem:
                return problem
    return None


def check_fields(settings: Any) -> None:
    """Refuse, in one line that names the option, the first field of the dataclass ``settings`` out of range."""
    for field in dataclasses.fields(settings):
        problem = check_value(field, getattr(settings, field.name))
        if problem:
            raise BadInput(f"{flag(field.name)} {problem}")


def field_default(field: dataclasses.Field) -> Any:
    """A settings field's default now (a fast-mode default is computed when asked)."""
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def defaults(settings: type) -> dict[str, Any]:
    """Every field's default of the settings dataclass ``settings``, by name (None where the user must give it)."""
    return {field.name: field_default(field) for field in dataclasses.fields(settings)}


#: The Mask R-CNN paper's SGD rate for its 16 images per step; the linear-scaling rule (Goyal et al.,
#: 2017) scales it with the batch: 0.01 for Detectron2's Cityscapes batch of 8, 0.005 for the default 4.
PAPER_LR, PAPER_BATCH = 0.02, 16
POSITIVE = Bounds(low=1)
NON_NEGATIVE = Bounds(low=0)
ABOVE_ZERO = Bounds(low=0, low_open=True)
FRACTION = Bounds(low=0, high=1)
#: The smallest image side: Mask R-CNN's coarsest feature map has a stride of 32 pixels.
IMAGE_SIDE = Bounds(low=32)


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The options of a training run (not the data, the architecture or where it is written)."""

    steps: int = option(None, "optimizer steps in all (a resumed run continues up to the same total)", bounds=POSITIVE,
                        required=True)
    batch_size: int = option(4, "images per optimizer step (split over --processes)", bounds=POSITIVE)
    optimizer: str = option("sgd", "sgd for fine-tuning COCO weights; adamw (e.g. --lr 1e-3 --weight-decay 0.05) from scratch",
                            choices=("sgd", "adamw"))
    lr: float = option(PAPER_LR * 4 / PAPER_BATCH, "base learning rate (SGD: 0.02 x batch size / 16, the paper's rate "
                       "scaled linearly with the batch)", bounds=ABOVE_ZERO)
    weight_decay: float = option(1e-4, "L2 (sgd) or decoupled (adamw) weight decay", bounds=NON_NEGATIVE)
    warmup_steps: int = option(50, "steps of linear learning-rate warmup", bounds=NON_NEGATIVE, aliases=("--warmup",))
    schedule: str = option("cosine", "learning-rate decay after the warmup", choices=SCHEDULES)
    grad_clip: float = option(10.0, "largest global gradient norm (a from-scratch Mask R-CNN starts with huge gradients)",
                              bounds=ABOVE_ZERO)
    repeat_threshold: float = option(0.0, THRESHOLD_HELP, bounds=FRACTION)
    seed: int = option(0, "seed of the initial weights and the batch order", bounds=NON_NEGATIVE)
    amp: str = option("auto", "mixed precision (auto: on for CUDA and for CPUs with bfloat16 units)", choices=tuple(AMP_OPTIONS))
    processes: int = option(1, "data-parallel training processes started on this machine (one per GPU, or per CPU "
                            "core); under torchrun leave it out: torchrun starts them", bounds=POSITIVE)

    def __post_init__(self) -> None:
        if self.steps is None:
            raise BadInput(f"{flag('steps')} is needed: how many optimizer steps to train")
        check_fields(self)
        if self.batch_size % self.processes:
            raise BadInput(f"--batch-size {self.batch_size} must be a multiple of --processes {self.processes}")
