"""Train a Mask R-CNN: SGD or AdamW + warmup + schedule, clipping, AMP, atomic checkpoints, exact resume.

The loop is the classic detection recipe (Detectron / torchvision references), written out so each
line can be read:

    for step in range(start, steps):
        images, targets = next batch                   # deterministic in (seed, step)
        losses = model(images, targets)                # dict of the 5 Mask R-CNN losses
        stop if sum(losses) is NaN/inf                 # last good checkpoint stays intact
        backward (scaled under AMP), unscale, clip the gradient norm, optimizer step, schedule step
        every `checkpoint_every` steps: save model + optimizer + scheduler + scaler + RNG + step
        on Ctrl-C: finish the step, save, stop                  # nothing since the last checkpoint is lost

Resume is exact: the batch order is a pure function of (seed, step) and every random number
generator (Python, NumPy, torch CPU/CUDA) is saved and restored, so an interrupted and resumed run
ends with the same weights as an uninterrupted one (with ``num_workers=0``; worker processes draw
their own augmentation randomness).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from course_lib import environment
from course_lib.data import sampling
from course_lib.engine import distributed
from course_lib.engine.distributed import TrainingInterrupted
from course_lib.engine.checkpoint import load_checkpoint, preserved_rng
from course_lib.engine.run import Run, Sample, resume_from_checkpoint, save, setup
from course_lib.engine.settings import TrainSettings
from course_lib.structures.instances import batch_to_device
from course_lib.viz.overlay import draw_masks_and_boxes

EvalFn = Callable[[nn.Module], dict[str, float]]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


def batches(dataset: Sequence[Sample], *, start: int, steps: int, batch_size: int, seed: int,
            num_workers: int = 0, rank: int = 0, world: int = 1,
            repeat_factors: torch.Tensor | None = None) -> Iterator[list[Sample]]:
    """The batches (lists of samples) of steps ``start .. steps-1``; with ``world`` data-parallel
    processes, the ``rank``-th slice of ``batch_size // world`` samples of each.

    The order is :func:`course_lib.data.sampling.batch_plan`'s: a shuffle per epoch, with each item
    repeated by its ``repeat_factors`` entry if given (repeat-factor sampling).

    With ``num_workers=0`` they are loaded in this process, so random augmentations draw from the
    RNG state that checkpoints save (exact resume). With workers (faster on a GPU machine), each
    worker is seeded from (seed, start): reproducible, but a resumed run augments differently
    from an uninterrupted one.
    """
    share = batch_size // world
    plan = [indices[rank * share:(rank + 1) * share] for indices in sampling.batch_plan(
        start, steps, batch_size=batch_size, dataset_length=len(dataset), seed=seed, factors=repeat_factors)]
    if num_workers == 0:
        return ([dataset[i] for i in indices] for indices in plan)
    generator = torch.Generator().manual_seed(seed * 100_003 + start)
    return iter(torch.utils.data.DataLoader(dataset, batch_sampler=plan, num_workers=num_workers,
                                            collate_fn=list, generator=generator))


#: Steps between two checkpoints unless the caller asks otherwise.
CHECKPOINT_EVERY = 100


def train(
    model: nn.Module,
    dataset: Sequence[Sample],
    settings: TrainSettings,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = CHECKPOINT_EVERY,
    log_dir: str | os.PathLike | None = None,
    resume: bool = False,
    eval_fn: EvalFn | None = None,
    eval_every: int | None = None,
    device: torch.device | None = None,
    num_workers: int = 0,
    repeat_factors: torch.Tensor | Sequence[float] | None = None,
    loss_weights: dict[str, float] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` in place for ``settings.steps`` optimizer steps with ``settings``' recipe; return the history.

    In a process group (:func:`course_lib.engine.distributed.launch`, ``torchrun``), each process trains on its
    share of every batch under ``DistributedDataParallel``; rank 0 alone evaluates, logs and writes checkpoints,
    and a checkpoint resumes with as many processes.

    Args:
        dataset: indexable; ``dataset[i]`` is ``(image [3,H,W] float, target dict)``.
        settings: the recipe (steps, batch, optimizer, schedule, clipping, seed, mixed precision); its
            ``repeat_threshold`` and ``processes`` are the caller's to turn into ``repeat_factors`` and processes.
        checkpoint_dir: where ``last.pt`` is written every ``checkpoint_every`` steps and at the end.
        log_dir: TensorBoard directory (losses and lr per step, a sample prediction per eval).
        resume: continue from ``checkpoint_dir/last.pt`` (see :func:`check_new_run`).
        eval_fn: ``eval_fn(model) -> {metric: value}``, called every ``eval_every`` steps and at
            the last step with the model in eval mode; the RNG streams are left untouched by it.
        device: where to train (default :func:`course_lib.engine.distributed.process_device`).
        num_workers: data-loading processes (see :func:`batches`; 0 keeps resume exact).
        repeat_factors: [len(dataset)] how often each item is shown per epoch
            (:func:`course_lib.data.sampling.repeat_factors`); ``None``: once. A checkpoint resumes
            only with the same factors.
        loss_weights: a factor per loss name (e.g. ``{"loss_mask": 2.0}``); the others count once.

    Returns:
        ``{"loss": [{"step", "lr", "loss", <each loss>}...], "eval": [{"step", "train_wall_s",
        "train_cpu_s", <metrics>}...], "train_wall_s", "train_cpu_s", "steps"}``. Times count
        training steps only (no evaluation, no checkpoint writing).

    Raises:
        TrainingDiverged: on a NaN/inf loss, before the weights are touched.
        TrainingInterrupted: on Ctrl-C (in any process: all stop at the same step), once the step ends and
            ``last.pt`` is saved.
    """
    run = setup(model, dataset, settings, device=device, checkpoint_dir=checkpoint_dir, resume=resume,
                repeat_factors=repeat_factors, loss_weights=loss_weights)
    if resume:
        resume_from_checkpoint(run)
    else:
        environment.seed_everything(settings.seed + run.rank)  # rank 0 draws what a single process would
    run.writer = _summary_writer(log_dir) if run.rank == 0 else None
    try:
        _steps(run, dataset, eval_fn=eval_fn, eval_every=eval_every, checkpoint_every=checkpoint_every,
               num_workers=num_workers, progress=progress)
    finally:
        if run.writer is not None:
            run.writer.close()
    model.eval()
    return run.history


def _steps(run: Run, dataset: Sequence[Sample], *, eval_fn: EvalFn | None, eval_every: int | None,
           checkpoint_every: int, num_workers: int, progress: bool) -> None:
    """Steps ``run.start .. steps-1``: train, log, evaluate and checkpoint when due; on Ctrl-C save and stop."""
    steps = run.settings.steps
    bar = tqdm(range(run.start, steps), initial=run.start, total=steps, desc="train", disable=not progress or run.rank > 0)
    loader = batches(dataset, start=run.start, steps=steps, batch_size=run.settings.batch_size, seed=run.settings.seed,
                     num_workers=num_workers, rank=run.rank, world=run.world, repeat_factors=run.repeat_factors)
    clock = _Clock()  # the first step's time includes loading its batch, as every later one's does
    with distributed.ctrl_c_deferred() as pressed:
        for step, samples in zip(bar, loader):
            record = train_step(run, samples, step)
            clock.add_to(run.history)
            log_step(run, record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2g}")
            done = step + 1
            if done == steps or (eval_every and done % eval_every == 0):
                evaluate(run, eval_fn, dataset, done)
            stopping = done < steps and distributed.stop_requested(pressed, run.device)
            if done == steps or done % checkpoint_every == 0 or stopping:
                save(run, done)
            if stopping:
                saved = f"saved {run.checkpoint}: continue with --resume" if run.checkpoint is not None else "no checkpoint folder"
                raise TrainingInterrupted(f"stopped at the end of step {done} of {steps}; {saved}")
            clock.restart()


class _Clock:
    """Wall and CPU seconds since the last restart, added into a history's ``train_wall_s`` and ``train_cpu_s``."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def add_to(self, history: dict[str, Any]) -> None:
        history["train_wall_s"] += time.perf_counter() - self.wall
        history["train_cpu_s"] += time.process_time() - self.cpu


def train_step(run: Run, samples: list[Sample], step: int) -> dict[str, float]:
    """One optimizer step on ``samples`` (this process's share of the batch of ``step``).

    Returns ``{"step", "lr", "loss", <each loss>}``, the losses averaged over the processes (so all of
    them stop together on a NaN). Raises :class:`TrainingDiverged` before touching the weights.
    """
    images, targets = batch_to_device(samples, run.device)
    with torch.autocast(device_type=run.device.type, dtype=run.amp_dtype, enabled=run.amp):
        losses = run.net(images, targets)
    loss = sum(value * run.loss_weights.get(name, 1.0) for name, value in losses.items())
    values = torch.stack([v.detach().float() for v in (loss, *losses.values())])
    logged = dict(zip(["loss", *losses], distributed.all_mean(values).tolist()))
    if not math.isfinite(logged["loss"]):
        raise _diverged(run, step, logged)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.settings.grad_clip is not None:
        run.scaler.unscale_(run.optimizer)  # clip the true gradient, not the loss-scaled one
        torch.nn.utils.clip_grad_norm_([p for group in run.optimizer.param_groups for p in group["params"]],
                                       run.settings.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    lr = run.scheduler.get_last_lr()[0]
    run.scheduler.step()
    return {"step": step, "lr": lr, **logged}


def _diverged(run: Run, step: int, logged: dict[str, float]) -> TrainingDiverged:
    if run.checkpoint is not None and run.checkpoint.exists():
        last = f"the last good checkpoint is {run.checkpoint} (step {_checkpoint_step(run.checkpoint)})"
    else:
        last = "no checkpoint was written"
    parts = ", ".join(f"{k}={v:.4g}" for k, v in logged.items() if k != "loss")
    return TrainingDiverged(f"loss is {logged['loss']} at step {step} ({parts}); stopped before updating the weights, "
                            f"{last}. Lower lr, lengthen the warmup or clip gradients harder, then resume.")


def log_step(run: Run, record: dict[str, float]) -> None:
    """Append a step's ``record`` to the history and, on rank 0 with a log_dir, to TensorBoard (``train/...``)."""
    run.history["loss"].append(record)
    _add_scalars(run.writer, "train", record)


def _add_scalars(writer: Any, prefix: str, record: dict[str, float]) -> None:
    if writer is not None:
        for name, value in record.items():
            if name != "step":
                writer.add_scalar(f"{prefix}/{name}", value, record["step"])


def evaluate(run: Run, eval_fn: EvalFn | None, dataset: Sequence[Sample], step: int) -> None:
    """On rank 0: ``eval_fn`` into the history and TensorBoard, and a sample prediction on ``dataset[0]``,
    without moving the training's random streams (loading an augmented item draws from them); the others wait."""
    if run.rank == 0:
        with preserved_rng():
            run.model.eval()
            record = {"step": step, "train_wall_s": run.history["train_wall_s"], "train_cpu_s": run.history["train_cpu_s"]}
            if eval_fn is not None:
                record.update(eval_fn(run.model))
            if run.writer is not None:
                _log_sample_prediction(run.writer, run.model, dataset[0][0].to(run.device), step)
                _add_scalars(run.writer, "eval", record)
            run.model.train()
        if eval_fn is not None:
            run.history["eval"].append(record)
    distributed.barrier()


def _checkpoint_step(path: Path) -> int:
    return int(load_checkpoint(path)["step"])


def _summary_writer(log_dir: str | os.PathLike | None):
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter  # imported lazily: TensorBoard is slow to import

    return SummaryWriter(str(log_dir))


@torch.no_grad()
def _log_sample_prediction(writer, model: nn.Module, image: torch.Tensor, step: int, score_threshold: float = 0.5) -> None:
    """Draw the model's masks and boxes (score >= threshold) on one image into TensorBoard."""
    prediction = model([image])[0]
    keep = prediction["scores"] >= score_threshold
    # One colour, not class colours: the labels may be COCO's as well as Cityscapes'. (torchvision's
    # default palette would paint the first instance black.)
    canvas = draw_masks_and_boxes(image, prediction["masks"][keep], prediction["boxes"][keep], colors="yellow")
    writer.add_image("sample_prediction", canvas, step)


