"""Training settings declared once: each option's type, allowed values, default and help.

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
#: The ``--amp`` choices, as :func:`course_lib.engine.trainer.train`'s ``amp`` (``None``: it chooses).
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
           aliases: tuple[str, ...] = ()) -> Any:
    """A settings field: its default, help, allowed values (``bounds`` for numbers, ``choices`` for
    words) and older command-line spellings that recorded commands still use (``aliases``)."""
    return dataclasses.field(default=default, metadata={"help": help, "bounds": bounds, "choices": choices, "aliases": aliases})


def flag(name: str) -> str:
    """The command-line spelling of a field: ``warmup_steps`` -> ``--warmup-steps``."""
    return "--" + name.replace("_", "-")


def check_value(field: dataclasses.Field, value: Any) -> str | None:
    """What is wrong with ``value`` for ``field`` (range or choice), or None."""
    if field.metadata["choices"] is not None and value not in field.metadata["choices"]:
        return f"must be one of {', '.join(field.metadata['choices'])}, got {value!r}"
    if field.metadata["bounds"] is not None and value is not None:
        return field.metadata["bounds"].problem(value)
    return None


#: The Mask R-CNN paper's SGD rate for its 16 images per step; the linear-scaling rule (Goyal et al.,
#: 2017) scales it with the batch: 0.01 for Detectron2's Cityscapes batch of 8, 0.005 for the default 4.
PAPER_LR, PAPER_BATCH = 0.02, 16
POSITIVE = Bounds(low=1)
NON_NEGATIVE = Bounds(low=0)
ABOVE_ZERO = Bounds(low=0, low_open=True)
FRACTION = Bounds(low=0, high=1)


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The options of a training run (not the data, the architecture or where it is written)."""

    steps: int = option(None, "optimizer steps in all (a resumed run continues up to the same total)", bounds=POSITIVE)
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
    processes: int = option(1, "data-parallel training processes (one per GPU, or per CPU core)", bounds=POSITIVE)

    def __post_init__(self) -> None:
        if self.steps is None:
            raise BadInput(f"{flag('steps')} is needed: how many optimizer steps to train")
        for field in dataclasses.fields(self):
            problem = check_value(field, getattr(self, field.name))
            if problem:
                raise BadInput(f"{flag(field.name)} {problem}")
        if self.batch_size % self.processes:
            raise BadInput(f"--batch-size {self.batch_size} must be a multiple of --processes {self.processes}")

    def train_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`course_lib.engine.trainer.train` these settings stand for."""
        kwargs = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        del kwargs["repeat_threshold"], kwargs["processes"]  # the caller turns these into repeat factors and processes
        return {**kwargs, "amp": AMP_OPTIONS[self.amp]}


def defaults() -> dict[str, Any]:
    """Every field's default, by name (``steps``: None, the user's to give)."""
    return {field.name: field.default for field in dataclasses.fields(TrainSettings)}
