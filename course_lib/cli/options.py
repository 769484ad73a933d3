"""Options shared by several commands: which dataset, and how a batch splits over processes."""

from __future__ import annotations

import argparse
from typing import NoReturn

import torch

from course_lib.data.augment import Transforms
from course_lib.data.catalog import DEFAULT_SPLITS, load_dataset
from course_lib.errors import BadInput


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose mistakes are one line (``error: ...``, exit code 2 from
    ``python -m course_lib``) rather than the usage text and a ``SystemExit``."""

    def error(self, message: str) -> NoReturn:
        raise BadInput(f"{message} (see {self.prog} --help)")


def add_dataset_arguments(parser: argparse.ArgumentParser, toycity_length: int, toycity_seed: int) -> None:
    """Add ``--data --root --split --scale --length --data-seed --height --width`` to ``parser``."""
    parser.add_argument("--data", choices=("toycity", "cityscapes", "coco"), required=True)
    parser.add_argument("--root", help="Cityscapes folder (default $CITYSCAPES_DATASET) or COCO folder (what data_scripts/download_coco.py wrote)")
    parser.add_argument("--split", help="Cityscapes / COCO split (default: train/train2017 to train, val/val2017 to evaluate)")
    parser.add_argument("--scale", type=float, default=1.0, help="Cityscapes: downscale factor in (0, 1], e.g. 0.5 for 512x1024")
    parser.add_argument("--length", type=int, default=toycity_length, help="ToyCity: number of generated scenes")
    parser.add_argument("--data-seed", type=int, default=toycity_seed, help="ToyCity: seed of the first scene")
    parser.add_argument("--height", type=int, default=128, help="ToyCity image height")
    parser.add_argument("--width", type=int, default=256, help="ToyCity image width")


def check_batch_split(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Stop a command line that has ``--batch-size`` and ``--processes`` before any process starts
    when the batch cannot be shared evenly (:func:`course_lib.engine.distributed.launch`'s workers would each fail on their own)."""
    if args.batch_size % args.processes:
        parser.error(f"--batch-size {args.batch_size} must be a multiple of --processes {args.processes}")


def dataset_from_arguments(args: argparse.Namespace, purpose: str, transforms: Transforms | None = None) -> torch.utils.data.Dataset:
    """The dataset the options of :func:`add_dataset_arguments` name, for ``purpose`` ``"train"`` or ``"eval"``
    (``args.split`` is set to the split used)."""
    if args.data != "toycity":
        args.split = args.split or DEFAULT_SPLITS[(args.data, purpose)]
    return load_dataset(args.data, purpose, root=args.root, split=args.split, scale=args.scale, length=args.length,
                        seed=args.data_seed, height=args.height, width=args.width, transforms=transforms)
