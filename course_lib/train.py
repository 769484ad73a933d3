"""Train a Mask R-CNN: SGD or AdamW + warmup + schedule, clipping, AMP, atomic checkpoints, exact resume.

The loop is the classic detection recipe (Detectron / torchvision references), written out so each
line can be read:

    for step in range(start, steps):
        images, targets = next batch                   # deterministic in (seed, step)
        losses = model(images, targets)                # dict of the 5 Mask R-CNN losses
        stop if sum(losses) is NaN/inf                 # last good checkpoint stays intact
        backward (scaled under AMP), unscale, clip the gradient norm, optimizer step, schedule step
        every `checkpoint_every` steps: save model + optimizer + scheduler + scaler + RNG + step

Resume is exact: the batch order is a pure function of (seed, step) and every random number
generator (Python, NumPy, torch CPU/CUDA) is saved and restored, so an interrupted and resumed run
ends with the same weights as an uninterrupted one (with ``num_workers=0``; worker processes draw
their own augmentation randomness).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import pickle
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from course_lib import distributed, runtime, sampling
from course_lib.atomic import atomic_path, write_json
from course_lib.errors import BadInput, ResumeMismatch, UnreadableCheckpoint, WouldOverwrite

#: A dataset item: an image tensor [3, H, W] (float in [0, 1]) and a Mask R-CNN target dict
#: (boxes [N, 4] xyxy, labels [N], masks [N, H, W]).
Sample = tuple[torch.Tensor, dict[str, torch.Tensor]]
EvalFn = Callable[[nn.Module], dict[str, float]]

CHECKPOINT_NAME = "last.pt"
#: What a training run writes into its folder (the command line adds the last two).
RUN_FILES = (CHECKPOINT_NAME, "model.pt", "history.json")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


#: The learning-rate schedules after the warmup (see :func:`lr_factor`).
SCHEDULES = ("cosine", "linear", "step")


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


def batches(dataset: Sequence[Sample], *, start: int, steps: int, batch_size: int, seed: int,
            num_workers: int = 0, rank: int = 0, world: int = 1,
            repeat_factors: torch.Tensor | None = None) -> Iterator[list[Sample]]:
    """The batches (lists of samples) of steps ``start .. steps-1``; with ``world`` data-parallel
    processes, the ``rank``-th slice of ``batch_size // world`` samples of each.

    The order is :func:`course_lib.sampling.batch_plan`'s: a shuffle per epoch, with each item
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


def rng_state() -> dict[str, Any]:
    """Snapshot of every random number generator the loop touches."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a side task (evaluation, logging) without moving the training RNG streams."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically (:func:`course_lib.atomic.atomic_path`).

    A crash while writing leaves the previous checkpoint untouched and removes the partial
    temporary file.
    """
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`train` (it holds RNG states, hence ``weights_only=False``).

    Raises :class:`UnreadableCheckpoint` for an empty, truncated or foreign file (left as it is).
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except (EOFError, RuntimeError, pickle.UnpicklingError) as error:
        raise UnreadableCheckpoint(
            f"{path} is not a readable checkpoint ({str(error).splitlines()[0] or type(error).__name__}; empty or cut short?): "
            "move it away to start afresh, or resume from a copy of the run"
        ) from None


def check_new_run(folder: str | os.PathLike, resume: bool) -> None:
    """Raise :class:`WouldOverwrite` if ``folder`` already holds a run's files and ``resume`` is False."""
    existing = [name for name in RUN_FILES if (Path(folder) / name).exists()]
    if existing and not resume:
        raise WouldOverwrite(f"{folder} already holds a training run ({', '.join(existing)}): continue it with "
                             "--resume (resume=True), or give another output folder")


def check_same_settings(checkpoint: Path, saved: dict[str, Any], settings: dict[str, Any]) -> None:
    """Raise :class:`ResumeMismatch` if a resumed run asks for other settings than its checkpoint's.

    The optimizer and schedule states in the checkpoint would silently override a new learning
    rate, and a new seed, batch size or step count would change the batch order or the schedule.
    """
    changed = [name for name in settings if name in saved and saved[name] != settings[name]]
    if changed:
        was = ", ".join(f"{name}={saved[name]}" for name in changed)
        now = ", ".join(f"{name}={settings[name]}" for name in changed)
        raise ResumeMismatch(f"{checkpoint} was trained with {was}; this run asks for {now}: resume with the "
                             "checkpoint's settings, or start afresh in another folder")


def collate(samples: Sequence[Sample], device: torch.device) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Lists of images and targets on ``device`` (Mask R-CNN takes lists: images may differ in size)."""
    images = [image.to(device) for image, _ in samples]
    targets = [{key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in target.items()}
               for _, target in samples]  # image_id is a plain int
    return images, targets


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


#: The ``--amp`` choices of the command lines, as ``train``'s ``amp`` argument.
AMP_OPTIONS = {"auto": None, "on": True, "off": False}


def amp_setting(amp: bool | None, device: torch.device) -> tuple[bool, torch.dtype]:
    """Whether to train under autocast on ``device``, and in which dtype.

    float16 on CUDA, bfloat16 elsewhere (it keeps float32's exponent range, so only float16 needs
    the loss scaled). ``amp=None`` chooses: on for CUDA, and on a CPU only where it has bfloat16
    units (:func:`course_lib.runtime.cpu_has_bf16_units`; without them bfloat16 is slower).
    """
    if amp is None:
        amp = device.type == "cuda" or (device.type == "cpu" and bool(runtime.cpu_has_bf16_units()))
    return amp, torch.float16 if device.type == "cuda" else torch.bfloat16


def train(
    model: nn.Module,
    dataset: Sequence[Sample],
    *,
    steps: int,
    batch_size: int = 4,
    lr: float = 0.02,
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

    Inside :func:`course_lib.distributed.launch` (data parallel), each process trains on its
    share of every batch of ``batch_size`` images under ``DistributedDataParallel``; rank 0 alone
    evaluates, logs and writes checkpoints, and a checkpoint resumes with as many processes.

    Args:
        dataset: indexable; ``dataset[i]`` is ``(image [3,H,W] float, target dict)``.
        steps: total optimisation steps (a resumed run continues up to the same total).
        lr: base learning rate for ``batch_size`` (torchvision's reference: 0.02 for 16 images).
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
        resume: continue from ``checkpoint_dir/last.pt`` if it exists.
        num_workers: data-loading processes (see :func:`batches`; 0 keeps resume exact).
        repeat_factors: [len(dataset)] how often each item is shown per epoch
            (:func:`course_lib.sampling.repeat_factors`); ``None``: once. A checkpoint resumes
            only with the same factors.
        eval_fn: ``eval_fn(model) -> {metric: value}``, called every ``eval_every`` steps and at
            the last step with the model in eval mode; the RNG streams are left untouched by it.

    Returns:
        ``{"loss": [{"step", "lr", "loss", <each loss>}...], "eval": [{"step", "train_wall_s",
        "train_cpu_s", <metrics>}...], "train_wall_s", "train_cpu_s", "steps"}``. Times count
        training steps only (no evaluation, no checkpoint writing).

    Raises:
        TrainingDiverged: on a NaN/inf loss, before the weights are touched.
    """
    device = device or runtime.device()
    amp, amp_dtype = amp_setting(amp, device)
    if len(dataset) == 0:
        raise BadInput("the training set is empty: give at least one image (for ToyCity, --length 1 or more)")
    if repeat_factors is not None:
        repeat_factors = torch.as_tensor(repeat_factors, dtype=torch.float64)
    rank, world = distributed.rank_and_world()
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} does not split over {world} processes: use a multiple of {world}")
    model.to(device).train()
    # DDP averages the gradients over the processes during backward (GroupNorm: no batch statistics to sync)
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
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
    if resume and checkpoint is not None and checkpoint.exists():
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
        runtime.seed_everything(seed + rank)  # rank 0 draws what a single process would
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
    for step, samples in zip(bar, loader):
        images, targets = collate(samples, device)
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
        if done == steps or done % checkpoint_every == 0:
            save(done)
        wall0, cpu0 = time.perf_counter(), time.process_time()  # the next step's clock includes loading its batch
    if writer is not None:
        writer.close()
    model.eval()
    return history


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
    from course_lib.viz import draw_masks_and_boxes  # imported lazily: matplotlib is slow to import

    prediction = model([image])[0]
    keep = prediction["scores"] >= score_threshold
    # One colour, not class colours: the labels may be COCO's as well as Cityscapes'. (torchvision's
    # default palette would paint the first instance black.)
    canvas = draw_masks_and_boxes(image, prediction["masks"][keep], prediction["boxes"][keep], colors="yellow")
    writer.add_image("sample_prediction", canvas, step)


#: Training recipes: the defaults of ``python -m course_lib train --recipe NAME``. ``toycity`` is the
#: recipe of the shipped ToyCity model, also the defaults of ``data_scripts/train_toycity.py``.
RECIPES: dict[str, dict[str, Any]] = {
    "finetune": {"steps": None, "batch_size": 4, "optimizer": "sgd", "lr": 0.02, "weight_decay": 1e-4, "warmup": 50,
                 "schedule": "cosine", "grad_clip": 10.0, "repeat_threshold": 0.0, "seed": 0, "amp": "auto", "processes": 1},
    "toycity": {"steps": 1300, "batch_size": 4, "optimizer": "adamw", "lr": 1.4e-3, "weight_decay": 0.05, "warmup": 100,
                "schedule": "linear", "grad_clip": 10.0, "repeat_threshold": 0.0, "seed": 0, "amp": "auto", "processes": 1},
}


def add_recipe_arguments(parser: argparse.ArgumentParser, recipe: str) -> None:
    """Add the options of a training recipe (``--steps --batch-size --optimizer --lr ...``) with
    :data:`RECIPES` ``[recipe]`` as their defaults (``--steps`` is required where the recipe has none)."""
    defaults = RECIPES[recipe]
    parser.add_argument("--steps", type=int, default=defaults["steps"], required=defaults["steps"] is None)
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default=defaults["optimizer"],
                        help="sgd for fine-tuning COCO weights; adamw (e.g. --lr 1e-3 --weight-decay 0.05) from scratch")
    parser.add_argument("--lr", type=float, default=defaults["lr"])
    parser.add_argument("--weight-decay", type=float, default=defaults["weight_decay"])
    parser.add_argument("--warmup", type=int, default=defaults["warmup"], help="warmup steps")
    parser.add_argument("--schedule", choices=SCHEDULES, default=defaults["schedule"])
    parser.add_argument("--grad-clip", type=float, default=defaults["grad_clip"])
    parser.add_argument("--repeat-threshold", type=float, default=defaults["repeat_threshold"], help=sampling.THRESHOLD_HELP)
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    parser.add_argument("--amp", choices=tuple(AMP_OPTIONS), default=defaults["amp"],
                        help="mixed precision (auto: on for CUDA and for CPUs with bfloat16 units)")
    parser.add_argument("--processes", type=int, default=defaults["processes"],
                        help="data-parallel training processes (one per GPU, or per CPU core), each on batch-size / processes images")
    parser.add_argument("--resume", action="store_true", help="continue from the output folder's last.pt")


def cli(argv: list[str]) -> int:
    """``python -m course_lib train --data toycity|cityscapes|coco [--recipe finetune|toycity] --arch ... --steps N --out DIR [--resume] [--processes P]``."""
    from course_lib import data
    from course_lib import model as models

    recipe_parser = argparse.ArgumentParser(add_help=False)
    recipe_parser.add_argument("--recipe", choices=tuple(RECIPES), default="finetune",
                               help="defaults of the training options: finetune, or toycity (the shipped ToyCity model's)")
    recipe = recipe_parser.parse_known_args(argv)[0].recipe
    parser = argparse.ArgumentParser(prog="python -m course_lib train", description=__doc__.splitlines()[0], parents=[recipe_parser])
    data.add_dataset_arguments(parser, toycity_length=2000, toycity_seed=0)
    parser.add_argument("--augment", action="store_true", help="flip, scale jitter, small rotation, colour jitter (course_lib.augment)")
    parser.add_argument("--arch", choices=models.ARCHS + tuple(models.ARCH_ALIASES), default="toycity_small")
    parser.add_argument("--weights", help="COCO weights for the R50 archs (e.g. DEFAULT): heads transferred to the 9 classes")
    parser.add_argument("--min-size", type=int)
    parser.add_argument("--max-size", type=int)
    add_recipe_arguments(parser, recipe)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes (0: exact resume; 2-4 on a GPU machine)")
    parser.add_argument("--out", required=True, help="output folder: last.pt, model.pt, history.json, tensorboard/")
    args = parser.parse_args(argv)
    distributed.check_batch_split(parser, args)
    check_new_run(args.out, args.resume)  # here, not in the worker processes: one line, not a traceback from each
    distributed.launch(_run_cli, args, processes=args.processes,
                       threads_per_process=max(1, torch.get_num_threads() // args.processes))
    return 0


def _run_cli(args: argparse.Namespace) -> None:
    """The training :func:`cli` asked for, in each of its processes (rank 0 writes the results)."""
    from course_lib import augment, data
    from course_lib import model as models

    rank, _ = distributed.rank_and_world()
    out = Path(args.out)
    dataset = data.dataset_from_arguments(args, "train", augment.train_transforms() if args.augment else None)
    runtime.seed_everything(args.seed)  # before the model draws its initial weights (the same in every process)
    model = models.build(args.arch, weights=args.weights, min_size=args.min_size, max_size=args.max_size)
    if rank == 0:
        print(runtime.banner(args.arch, f"{args.data} train ({len(dataset)} images)"))
    factors = sampling.dataset_repeat_factors(dataset, args.repeat_threshold, progress=rank == 0) if args.repeat_threshold else None
    history = train(
        model, dataset, steps=args.steps, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        weight_decay=args.weight_decay, warmup_steps=args.warmup, schedule=args.schedule, grad_clip=args.grad_clip,
        checkpoint_dir=out, checkpoint_every=args.checkpoint_every, log_dir=out / "tensorboard", seed=args.seed,
        resume=args.resume, num_workers=args.workers, amp=AMP_OPTIONS[args.amp], repeat_factors=factors,
    )
    if rank == 0:
        with atomic_path(out / "model.pt") as tmp:
            torch.save(model.state_dict(), tmp)
        write_json(out / "history.json", history)
        print(f"trained {args.steps} steps in {history['train_wall_s']:.0f} s; weights: {out / 'model.pt'}")
