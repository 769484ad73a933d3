"""One training run's state and its checkpoint: :func:`setup` makes a :class:`Run` at step 0,
:func:`resume_from_checkpoint` brings it to a saved step, :func:`save` writes it (the loop that steps it
is :func:`course_lib.engine.trainer.train`)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from course_lib.engine import distributed
from course_lib.engine.checkpoint import (
    CHECKPOINT_NAME,
    check_new_run,
    check_same_settings,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from course_lib.engine.recipes import amp_setting, lr_factor, make_optimizer
from course_lib.engine.settings import AMP_OPTIONS, TrainSettings
from course_lib.errors import BadInput, ResumeMismatch

#: A dataset item: an image tensor [3, H, W] (float in [0, 1]) and a Mask R-CNN target dict
#: (boxes [N, 4] xyxy, labels [N], masks [N, H, W]).
Sample = tuple[torch.Tensor, dict[str, torch.Tensor]]

#: The settings a checkpoint resumes only with: another seed, batch size or step count would change the batch
#: order or the schedule, and the optimizer and schedule states saved would silently override a new learning rate.
RESUME_SETTINGS = ("steps", "batch_size", "lr", "optimizer", "weight_decay", "warmup_steps", "schedule", "seed")


@dataclasses.dataclass
class Run:
    """One training run's state between steps: :func:`setup` makes it, :func:`resume_from_checkpoint`,
    :func:`train_step`, :func:`log_step`, :func:`evaluate` and :func:`save` read and update it."""

    settings: TrainSettings
    model: nn.Module
    net: nn.Module  # the model, or its DistributedDataParallel wrapper in a process group
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: bool
    amp_dtype: torch.dtype
    rank: int
    world: int
    checkpoint: Path | None  # where last.pt goes; None: no checkpoints
    repeat_factors: torch.Tensor | None  # [len(dataset)] float64
    loss_weights: dict[str, float]
    history: dict[str, Any]
    start: int = 0  # the first step this process runs
    writer: Any = None  # TensorBoard's SummaryWriter, on rank 0 with a log_dir


def setup(model: nn.Module, dataset: Sequence[Sample], settings: TrainSettings, *, device: torch.device | None,
          checkpoint_dir: str | os.PathLike | None, resume: bool, repeat_factors: torch.Tensor | Sequence[float] | None,
          loss_weights: dict[str, float] | None) -> Run:
    """Check the run can start, move ``model`` to the device (wrapped for data parallelism), and make the optimizer,
    the schedule and the gradient scaler: the :class:`Run` at step 0."""
    if len(dataset) == 0:
        raise BadInput("the training set is empty: give at least one image (for ToyCity, --length 1 or more)")
    rank, world = distributed.rank_and_world()
    if settings.batch_size % world:
        raise BadInput(f"batch_size {settings.batch_size} does not split over {world} processes: use a multiple of {world}")
    if checkpoint_dir is not None:
        check_new_run(checkpoint_dir, resume)
    elif resume:
        raise ValueError("resume=True needs the checkpoint_dir to resume from")
    device = device or distributed.process_device()
    amp, amp_dtype = amp_setting(AMP_OPTIONS[settings.amp], device)
    model.to(device).train()
    net = distributed.data_parallel(model)  # DDP averages gradients; BatchNorm becomes SyncBatchNorm
    optimizer = make_optimizer(settings.optimizer, [p for p in model.parameters() if p.requires_grad],
                               lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(
        s, steps=settings.steps, warmup_steps=settings.warmup_steps, schedule=settings.schedule))
    return Run(
        settings=settings, model=model, net=net, optimizer=optimizer, scheduler=scheduler,
        scaler=torch.amp.GradScaler(device.type, enabled=amp and amp_dtype == torch.float16),
        device=device, amp=amp, amp_dtype=amp_dtype, rank=rank, world=world,
        checkpoint=Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None,
        repeat_factors=None if repeat_factors is None else torch.as_tensor(repeat_factors, dtype=torch.float64),
        loss_weights=loss_weights or {},
        history={"loss": [], "eval": [], "train_wall_s": 0.0, "train_cpu_s": 0.0, "steps": settings.steps},
    )


def resume_from_checkpoint(run: Run) -> None:
    """Load ``run.checkpoint`` into the run (weights, optimizer, schedule, scaler, this rank's random states,
    history), after checking it was written by a run with the same settings, processes and repeat factors."""
    state = load_checkpoint(run.checkpoint, map_location=run.device)
    _check_resumable(run, state)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng_by_rank"][run.rank] if run.world > 1 else state["rng"])
    run.start, run.history = state["step"], state["history"]
    run.history["steps"] = run.settings.steps


def _check_resumable(run: Run, state: dict[str, Any]) -> None:
    """Raise :class:`ResumeMismatch` if ``state`` (a loaded checkpoint) cannot continue as ``run``."""
    saved_world = len(state.get("rng_by_rank", [state["rng"]]))
    if saved_world != run.world:
        raise ResumeMismatch(f"{run.checkpoint} was written by {saved_world} training process(es): resume it with "
                             f"{saved_world} (this run has {run.world}), or start afresh in another folder")
    saved, factors = state.get("repeat_factors"), run.repeat_factors
    if (saved is None) != (factors is None) or (saved is not None and not torch.equal(saved, factors)):
        raise ResumeMismatch(f"{run.checkpoint} was trained with {'no' if saved is None else 'other'} repeat factors: "
                             "resume with the same repeat-factor setting and dataset, or start afresh in another folder")
    check_same_settings(run.checkpoint, state.get("settings", {}), _resume_settings(run.settings))


def _resume_settings(settings: TrainSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in RESUME_SETTINGS}


def save(run: Run, step: int) -> None:
    """Write ``last.pt`` (atomically, from rank 0) as the state at the end of ``step - 1``: every process takes part."""
    if run.checkpoint is None:
        return
    rngs = distributed.gather(rng_state())  # each process's random streams: a resumed run continues each
    if run.rank > 0:
        return
    save_checkpoint({
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(),
        "rng": rngs[0], **({"rng_by_rank": rngs} if run.world > 1 else {}),
        "step": step, "samples_seen": step * run.settings.batch_size, "history": run.history,
        "settings": _resume_settings(run.settings),
        **({"repeat_factors": run.repeat_factors} if run.repeat_factors is not None else {}),
    }, run.checkpoint)
