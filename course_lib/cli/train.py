"""``python -m course_lib train``: the command line of :func:`course_lib.engine.trainer.train`."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import torch

from course_lib import environment
from course_lib.cli import options
from course_lib.data import augment, sampling
from course_lib.engine import distributed
from course_lib.engine.checkpoint import claimed_run_folder, save_checkpoint
from course_lib.engine.recipes import RECIPES
from course_lib.engine.settings import NON_NEGATIVE, POSITIVE, TrainSettings
from course_lib.engine.trainer import CHECKPOINT_EVERY, train
from course_lib.modeling import maskrcnn as models
from course_lib.utils.atomic import write_json


def cli(argv: list[str]) -> int:
    """``python -m course_lib train --data toycity|cityscapes|coco [--recipe finetune|toycity] --arch ... --steps N --out DIR [--resume] [--processes P]``."""
    recipe_parser = options.ArgumentParser(add_help=False)
    recipe_parser.add_argument("--recipe", choices=tuple(RECIPES), default="finetune",
                               help="defaults of the training options: finetune, or toycity (the shipped ToyCity model's)")
    recipe = recipe_parser.parse_known_args(argv)[0].recipe
    parser = options.ArgumentParser(prog="python -m course_lib train", description=__doc__.splitlines()[0], parents=[recipe_parser])
    options.add_dataset_arguments(parser, toycity_length=2000, toycity_seed=0)
    parser.add_argument("--augment", action="store_true", help="flip, scale jitter, small rotation, colour jitter (course_lib.data.augment)")
    options.add_arch_argument(parser, help="the architecture to build and train")
    parser.add_argument("--weights", help="COCO weights for the R50 archs (e.g. DEFAULT): heads transferred to the 9 classes")
    parser.add_argument("--min-size", type=options.number(int, POSITIVE))
    parser.add_argument("--max-size", type=options.number(int, POSITIVE))
    options.add_settings_arguments(parser, TrainSettings, RECIPES[recipe])
    parser.add_argument("--resume", action="store_true", help="continue from the output folder's last.pt")
    parser.add_argument("--checkpoint-every", type=options.number(int, POSITIVE), default=CHECKPOINT_EVERY)
    parser.add_argument("--workers", type=options.number(int, NON_NEGATIVE), default=0,
                        help="data-loading processes (0: exact resume; 2-4 on a GPU machine)")
    parser.add_argument("--out", required=True, help="output folder: last.pt, model.pt, history.json, tensorboard/")
    args = parser.parse_args(argv)
    settings = options.settings_from_arguments(TrainSettings, args)
    # checked and locked here, before the processes of --processes start: one line, not a traceback from each;
    # under torchrun, by rank 0 (the others wait for it to join)
    with claimed_run_folder(args.out, args.resume) if distributed.writes_outputs() else contextlib.nullcontext():
        distributed.launch(_run_cli, args, settings, processes=settings.processes,
                           threads_per_process=max(1, torch.get_num_threads() // settings.processes))
    return 0


def _run_cli(args: argparse.Namespace, settings: TrainSettings) -> None:
    """The training :func:`cli` asked for, in each of its processes (rank 0 writes the results)."""
    rank, _ = distributed.rank_and_world()
    out = Path(args.out)
    dataset = options.dataset_from_arguments(args, "train", augment.train_transforms() if args.augment else None)
    environment.seed_everything(settings.seed)  # before the model draws its initial weights (the same in every process)
    model = models.build(args.arch, weights=args.weights, min_size=args.min_size, max_size=args.max_size)
    if rank == 0:
        print(environment.banner(args.arch, f"{args.data} train ({len(dataset)} images)"))
    factors = sampling.dataset_repeat_factors(dataset, settings.repeat_threshold, progress=rank == 0) if settings.repeat_threshold else None
    history = train(
        model, dataset, settings, checkpoint_dir=out, checkpoint_every=args.checkpoint_every,
        log_dir=out / "tensorboard", resume=args.resume, num_workers=args.workers, repeat_factors=factors,
    )
    if rank == 0:
        save_checkpoint(model.state_dict(), out / "model.pt")
        write_json(out / "history.json", history)
        print(f"trained {settings.steps} steps in {history['train_wall_s']:.0f} s; weights: {out / 'model.pt'}")
