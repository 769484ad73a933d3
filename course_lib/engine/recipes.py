"""Training recipes: learning-rate schedules, optimizers, mixed precision, and the course's recipes (one definition for the CLI and the scripts)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from course_lib import environment
from course_lib.engine.settings import AMP_OPTIONS, SCHEDULES, TrainSettings, defaults

__all__ = ["AMP_OPTIONS", "RECIPES", "SCHEDULES", "amp_setting", "lr_factor", "make_optimizer"]


def lr_factor(step: int, *, steps: int, warmup_steps: int, schedule: str, warmup_start: float = 0.001) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based).

    Linear warmup from ``warmup_start`` to 1 over ``warmup_steps``, then a cosine decay to 0 at
    ``steps``, a linear decay to 0 at ``steps``, or a step schedule (x0.1 at 2/3 and again at 8/9
    of the run).
    """
    if step < warmup_steps:
        alpha = step / warmup_steps
        return warmup_start * (1 - alpha) + alpha
    progress = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1 - progress
    if schedule == "step":
        return 0.1 ** sum(step >= int(steps * m) for m in (2 / 3, 8 / 9))
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")


def make_optimizer(name: str, params: list[nn.Parameter], *, lr: float, momentum: float = 0.9,
                   weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    """``"sgd"`` (momentum, L2 weight decay) or ``"adamw"`` (decoupled weight decay) over ``params``."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        # fused: one kernel over all parameters instead of a dozen small ops each (~10 ms per step on a CPU)
        fused = all(p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {name!r}")


def amp_setting(amp: bool | None, device: torch.device) -> tuple[bool, torch.dtype]:
    """Whether to train under autocast on ``device``, and in which dtype.

    float16 on CUDA, bfloat16 elsewhere (it keeps float32's exponent range, so only float16 needs
    the loss scaled). ``amp=None`` chooses: on for CUDA, and on a CPU only where it has bfloat16
    units (:func:`course_lib.environment.cpu_has_bf16_units`; without them bfloat16 is slower).
    """
    if amp is None:
        amp = device.type == "cuda" or (device.type == "cpu" and bool(environment.cpu_has_bf16_units()))
    return amp, torch.float16 if device.type == "cuda" else torch.bfloat16


#: Training recipes: the defaults of ``python -m course_lib train --recipe NAME``, one value per
#: :class:`course_lib.engine.settings.TrainSettings` field. ``toycity`` is the recipe of the shipped
#: ToyCity model, also the defaults of ``data_scripts/train_toycity.py``.
RECIPES: dict[str, dict[str, Any]] = {
    "finetune": defaults(TrainSettings),
    "toycity": {**defaults(TrainSettings), "steps": 1300, "optimizer": "adamw", "lr": 1.4e-3, "weight_decay": 0.05, "warmup_steps": 100,
                "schedule": "linear"},
}
