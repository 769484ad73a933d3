"""``python -m course_lib train``: the command line of :func:`course_lib.engine.trainer.train`."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from course_lib import runtime
from course_lib.cli import options
from course_lib.data import augment, sampling
from course_lib.engine import distributed
from course_lib.engine.checkpoint import claimed_run_folder, save_checkpoint
from course_lib.engine.recipes import AMP_OPTIONS, RECIPES, SCHEDULES
from course_lib.engine.trainer import train
from course_lib.modeling import maskrcnn as models
from course_lib.utils.atomic import write_json


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
    recipe_parser = options.ArgumentParser(add_help=False)
    recipe_parser.add_argument("--recipe", choices=tuple(RECIPES), default="finetune",
                               help="defaults of the training options: finetune, or toycity (the shipped ToyCity model's)")
    recipe = recipe_parser.parse_known_args(argv)[0].recipe
    parser = options.ArgumentParser(prog="python -m course_lib train", description=__doc__.splitlines()[0], parents=[recipe_parser])
    options.add_dataset_arguments(parser, toycity_length=2000, toycity_seed=0)
    parser.add_argument("--augment", action="store_true", help="flip, scale jitter, small rotation, colour jitter (course_lib.data.augment)")
    parser.add_argument("--arch", choices=models.ARCHS + tuple(models.ARCH_ALIASES), default="toycity_small")
    parser.add_argument("--weights", help="COCO weights for the R50 archs (e.g. DEFAULT): heads transferred to the 9 classes")
    parser.add_argument("--min-size", type=int)
    parser.add_argument("--max-size", type=int)
    add_recipe_arguments(parser, recipe)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes (0: exact resume; 2-4 on a GPU machine)")
    parser.add_argument("--out", required=True, help="output folder: last.pt, model.pt, history.json, tensorboard/")
    args = parser.parse_args(argv)
    options.check_batch_split(parser, args)
    # here, not in the worker processes: one line, not a traceback from each
    with claimed_run_folder(args.out, args.resume):
        distributed.launch(_run_cli, args, processes=args.processes,
                           threads_per_process=max(1, torch.get_num_threads() // args.processes))
    return 0


def _run_cli(args: argparse.Namespace) -> None:
    """The training :func:`cli` asked for, in each of its processes (rank 0 writes the results)."""
    rank, _ = distributed.rank_and_world()
    out = Path(args.out)
    dataset = options.dataset_from_arguments(args, "train", augment.train_transforms() if args.augment else None)
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
        save_checkpoint(model.state_dict(), out / "model.pt")
        write_json(out / "history.json", history)
        print(f"trained {args.steps} steps in {history['train_wall_s']:.0f} s; weights: {out / 'model.pt'}")
