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

import contextlib
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from course_lib import environment
from course_lib.data import sampling
from course_lib.engine import distributed
from course_lib.engine.checkpoint import (
    CHECKPOINT_NAME,
    check_new_run,
    check_same_settings,
    load_checkpoint,
    preserved_rng,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from course_lib.engine.recipes import amp_setting, lr_factor, make_optimizer
from course_lib.errors import BadInput, ResumeMismatch
from course_lib.structures.instances import batch_to_device
from course_lib.viz.overlay import draw_masks_and_boxes

#: A dataset item: an image tensor [3, H, W] (float in [0, 1]) and a Mask R-CNN target dict
#: (boxes [N, 4] xyxy, labels [N], masks [N, H, W]).
Sample = tuple[torch.Tensor, dict[str, torch.Tensor]]
EvalFn = Callable[[nn.Module], dict[str, float]]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run at the end of a step; the message names the checkpoint saved there."""


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


def train(
    model: nn.Module,
    dataset: Sequence[Sample],
    *,
    steps: int,
    batch_size: int = 4,
    lr: float = 0.005,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    warmup_steps: int = 50,
    schedule: str = "cosine",
    grad_clip: float | None = 10.0,
    loss_weights: dict[str, float] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    log_dir: str | os.PathLike | None = None,
    amp: bool | None = None,
    seed: int = 0,
    resume: bool = False,
    eval_fn: EvalFn | None = None,
    eval_every: int | None = None,
    device: torch.device | None = None,
    num_workers: int = 0,
    repeat_factors: torch.Tensor | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` in place for ``steps`` optimizer steps and return the history.

    Inside :func:`course_lib.engine.distributed.launch` (data parallel), each process trains on its
    share of every batch of ``batch_size`` images under ``DistributedDataParallel``; rank 0 alone
    evaluates, logs and writes checkpoints, and a checkpoint resumes with as many processes.

    Args:
        dataset: indexable; ``dataset[i]`` is ``(image [3,H,W] float, target dict)``.
        steps: total optimisation steps (a resumed run continues up to the same total).
        lr: base learning rate for ``batch_size`` (the paper's 0.02 for 16 images, scaled linearly:
            0.005 for the default 4).
        optimizer: ``"sgd"`` (with ``momentum``; the detection recipe for fine-tuning) or
            ``"adamw"`` (decoupled ``weight_decay``; converges much faster from scratch).
        warmup_steps, schedule: see :func:`lr_factor`.
        loss_weights: a factor per loss name (e.g. ``{"loss_mask": 2.0}``); the others count once.
        grad_clip: max global gradient norm (``None``: no clipping). A from-scratch Mask R-CNN
            starts with large losses and gradients; clipping keeps the first steps sane.
        checkpoint_dir: where ``last.pt`` is written every ``checkpoint_every`` steps and at the end.
        log_dir: TensorBoard directory (losses and lr per step, a sample prediction per eval).
        amp: mixed precision (float16 with a gradient scaler on CUDA, bfloat16 on a CPU);
            ``None`` lets :func:`amp_setting` choose.
        resume: continue from ``checkpoint_dir/last.pt`` (see :func:`check_new_run`).
        num_workers: data-loading processes (see :func:`batches`; 0 keeps resume exact).
        repeat_factors: [len(dataset)] how often each item is shown per epoch
            (:func:`course_lib.data.sampling.repeat_factors`); ``None``: once. A checkpoint resumes
            only with the same factors.
        eval_fn: ``eval_fn(model) -> {metric: value}``, called every ``eval_every`` steps and at
            the last step with the model in eval mode; the RNG streams are left untouched by it.

    Returns:
        ``{"loss": [{"step", "lr", "loss", <each loss>}...], "eval": [{"step", "train_wall_s",
        "train_cpu_s", <metrics>}...], "train_wall_s", "train_cpu_s", "steps"}``. Times count
        training steps only (no evaluation, no checkpoint writing).

    Raises:
        TrainingDiverged: on a NaN/inf loss, before the weights are touched.
        TrainingInterrupted: on Ctrl-C (single process), once the step ends and ``last.pt`` is saved.
    """
    device = device or environment.device()
    amp, amp_dtype = amp_setting(amp, device)
    if len(dataset) == 0:
        raise BadInput("the training set is empty: give at least one image (for ToyCity, --length 1 or more)")
    if repeat_factors is not None:
        repeat_factors = torch.as_tensor(repeat_factors, dtype=torch.float64)
    rank, world = distributed.rank_and_world()
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} does not split over {world} processes: use a multiple of {world}")
    model.to(device).train()
    net = distributed.data_parallel(model)  # DDP averages gradients; BatchNorm becomes SyncBatchNorm
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(optimizer, params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, steps=steps, warmup_steps=warmup_steps, schedule=schedule)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp and amp_dtype == torch.float16)
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    history: dict[str, Any] = {"loss": [], "eval": [], "train_wall_s": 0.0, "train_cpu_s": 0.0, "steps": steps}
    loss_factors = loss_weights or {}
    settings = {"steps": steps, "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "momentum": momentum,
                "weight_decay": weight_decay, "warmup_steps": warmup_steps, "schedule": schedule, "seed": seed}
    start = 0
    if checkpoint_dir is not None:
        check_new_run(checkpoint_dir, resume)
    elif resume:
        raise ValueError("resume=True needs the checkpoint_dir to resume from")
    if resume:
        state = load_checkpoint(checkpoint, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        saved_world = len(state.get("rng_by_rank", [state["rng"]]))
        if saved_world != world:
            raise ResumeMismatch(f"{checkpoint} was written by {saved_world} training process(es): resume it with "
                             f"{saved_world} (this run has {world}), or start afresh in another folder")
        saved_factors = state.get("repeat_factors")
        if (saved_factors is None) != (repeat_factors is None) or (
                saved_factors is not None and not torch.equal(saved_factors, repeat_factors)):
            raise ResumeMismatch(f"{checkpoint} was trained with {'no' if saved_factors is None else 'other'} repeat factors: "
                             "resume with the same repeat-factor setting and dataset, or start afresh in another folder")
        check_same_settings(checkpoint, state.get("settings", {}), settings)
        set_rng_state(state["rng_by_rank"][rank] if world > 1 else state["rng"])
        start, history = state["step"], state["history"]
        history["steps"] = steps
    else:
        environment.seed_everything(seed + rank)  # rank 0 draws what a single process would
    writer = _summary_writer(log_dir) if rank == 0 else None

    def run_eval(step: int) -> None:
        with preserved_rng():
            model.eval()
            record = {"step": step, "train_wall_s": history["train_wall_s"], "train_cpu_s": history["train_cpu_s"]}
            if eval_fn is not None:
                record.update(eval_fn(model))
            if writer is not None:
                _log_sample_prediction(writer, model, dataset[0][0].to(device), step)
                for name, value in record.items():
                    if name != "step":
                        writer.add_scalar(f"eval/{name}", value, step)
            model.train()
        if eval_fn is not None:
            history["eval"].append(record)

    def save(step: int) -> None:
        if checkpoint is None:
            return
        rngs = distributed.gather(rng_state())  # every process takes part; rank 0 writes
        if rank == 0:
            save_checkpoint({
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "rng": rngs[0], **({"rng_by_rank": rngs} if world > 1 else {}),
                "step": step, "samples_seen": step * batch_size, "history": history, "settings": settings,
                **({"repeat_factors": repeat_factors} if repeat_factors is not None else {}),
            }, checkpoint)

    bar = tqdm(range(start, steps), initial=start, total=steps, desc="train", disable=not progress or rank > 0)
    loader = batches(dataset, start=start, steps=steps, batch_size=batch_size, seed=seed, num_workers=num_workers,
                     rank=rank, world=world, repeat_factors=repeat_factors)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with _interrupt_at_step_end(enabled=world == 1) as interrupted:
        for step, samples in zip(bar, loader):
            images, targets = batch_to_device(samples, device)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp):
                losses = net(images, targets)
            loss = sum(value * loss_factors.get(name, 1.0) for name, value in losses.items())
            # the values to log and check, averaged over the processes: all of them stop together
            values = torch.stack([v.detach().float() for v in (loss, *losses.values())])
            logged = dict(zip(["loss", *losses], distributed.all_mean(values).tolist()))
            if not math.isfinite(logged["loss"]):
                last = f"the last good checkpoint is {checkpoint} (step {_checkpoint_step(checkpoint)})" if checkpoint is not None and checkpoint.exists() else "no checkpoint was written"
                parts = ", ".join(f"{k}={v:.4g}" for k, v in logged.items() if k != "loss")
                raise TrainingDiverged(
                    f"loss is {logged['loss']} at step {step} ({parts}); stopped before updating the weights, "
                    f"{last}. Lower lr, lengthen the warmup or clip gradients harder, then resume."
                )
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            scaler.step(opt)
            scaler.update()
            current_lr = scheduler.get_last_lr()[0]
            scheduler.step()
            history["train_wall_s"] += time.perf_counter() - wall0
            history["train_cpu_s"] += time.process_time() - cpu0

            record = {"step": step, "lr": current_lr, **logged}
            history["loss"].append(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{current_lr:.2g}")
            if writer is not None:
                for name, value in record.items():
                    if name != "step":
                        writer.add_scalar(f"train/{name}", value, step)
            done = step + 1
            if done == steps or (eval_every and done % eval_every == 0):
                if rank == 0:
                    run_eval(done)
                distributed.barrier()  # the other processes wait for rank 0's evaluation
            stopping = interrupted.is_set() and done < steps
            if done == steps or done % checkpoint_every == 0 or stopping:
                save(done)
            if stopping:
                if writer is not None:
                    writer.close()
                saved = f"saved {checkpoint}: continue with --resume" if checkpoint is not None else "no checkpoint folder"
                raise TrainingInterrupted(f"stopped at the end of step {done} of {steps}; {saved}")
            wall0, cpu0 = time.perf_counter(), time.process_time()  # the next step's clock includes loading its batch
    if writer is not None:
        writer.close()
    model.eval()
    return history


@contextlib.contextmanager
def _interrupt_at_step_end(enabled: bool) -> Iterator[threading.Event]:
    """Turn Ctrl-C (SIGINT) into an event the loop checks after each step: a half-done step (weights
    updated, schedule not yet) cannot be saved consistently. A second Ctrl-C stops at once.

    Only in the main thread (where Python delivers signals) and when ``enabled``; elsewhere
    Ctrl-C raises ``KeyboardInterrupt`` as usual.
    """
    pressed = threading.Event()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield pressed
        return

    def on_ctrl_c(signum: int, frame: object) -> None:
        if pressed.is_set():
            raise KeyboardInterrupt
        pressed.set()

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


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


