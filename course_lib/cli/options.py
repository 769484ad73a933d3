"""Options shared by several commands: the parser, checked numbers and sizes, settings dataclasses as options, which dataset."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, NoReturn

import torch

from course_lib.data.augment import Transforms
from course_lib.data.catalog import DEFAULT_SPLITS, load_dataset
from course_lib.engine.settings import IMAGE_SIDE, NON_NEGATIVE, Bounds, defaults, flag
from course_lib.modeling import maskrcnn as models
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
    parser.add_argument("--scale", type=float, default=1.0,  # checked by the Cityscapes loader, which Python callers use too
                        help="Cityscapes: downscale factor in (0, 1], e.g. 0.5 for 512x1024")
    parser.add_argument("--length", type=int, default=toycity_length, help="ToyCity: number of generated scenes")
    parser.add_argument("--data-seed", type=number(int, NON_NEGATIVE), default=toycity_seed, help="ToyCity: seed of the first scene")
    parser.add_argument("--height", type=number(int, IMAGE_SIDE), default=128, help="ToyCity image height")
    parser.add_argument("--width", type=number(int, IMAGE_SIDE), default=256, help="ToyCity image width")


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """Add ``--model`` (what :func:`course_lib.zoo.from_command_line` reads) and ``--arch`` (a checkpoint's architecture)."""
    parser.add_argument("--model", required=required, default=None if required else "toycity",
                        help="toycity" + ("" if required else " (default)") + ", coco (COCO weights read in the urban classes), "
                             "detectron2:Cityscapes/mask_rcnn_R_50_FPN, or the path of a checkpoint")
    add_arch_argument(parser, "architecture of a checkpoint given as --model")


def add_arch_argument(parser: argparse.ArgumentParser, help: str = "the model's architecture") -> None:
    """Add ``--arch``: one of :data:`course_lib.modeling.maskrcnn.ARCHS` or their aliases (default ``toycity_small``)."""
    parser.add_argument("--arch", choices=models.ARCHS + tuple(models.ARCH_ALIASES), default="toycity_small", help=help)


def number(kind: type, bounds: Bounds) -> Callable[[str], Any]:
    """An argparse ``type``: ``kind(text)`` (``int`` or ``float``) within ``bounds``, else one line saying why."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        problem = bounds.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value
    return parse


def image_size(bounds: Bounds) -> Callable[[str], tuple[int, int]]:
    """An argparse ``type``: ``HxW`` (e.g. ``128x256``), each side within ``bounds``."""
    def parse(text: str) -> tuple[int, int]:
        height, _, width = text.lower().partition("x")
        if not (height.isdigit() and width.isdigit()) or any(bounds.problem(int(side)) for side in (height, width)):
            raise argparse.ArgumentTypeError(f"expected HxW with both sides at least {bounds.low:g} pixels, e.g. 128x256; got {text!r}")
        return int(height), int(width)
    return parse


def _argument_type(field: dataclasses.Field) -> Callable[[str], Any] | None:
    """The argparse ``type`` of a settings field, from its annotation: a checked number, a checked ``HxW``
    size, or None for words (checked by their choices)."""
    kind, bounds = field.type.removesuffix(" | None"), field.metadata["bounds"] or Bounds()
    if kind == "tuple[int, int]":
        return image_size(bounds)
    return number({"int": int, "float": float}[kind], bounds) if kind in ("int", "float") else None


def add_settings_arguments(parser: argparse.ArgumentParser, settings: type, recipe: dict[str, Any] | None = None) -> None:
    """One option per field of the settings dataclass ``settings`` (``--batch-size`` for ``batch_size``),
    with the defaults of ``recipe`` (else the fields' own); out-of-range values are refused while parsing.
    A field declared ``required`` must be given where its default is None."""
    values = recipe or defaults(settings)
    for field in dataclasses.fields(settings):
        default = values[field.name]
        shown = "x".join(map(str, default)) if isinstance(default, tuple) else default  # a size as it is typed
        parser.add_argument(flag(field.name), *field.metadata["aliases"], dest=field.name, default=default,
                            required=default is None and field.metadata["required"], choices=field.metadata["choices"],
                            type=_argument_type(field),
                            help=field.metadata["help"] + ("" if default is None else f" (default: {shown})"))


def settings_from_arguments(settings: type, args: argparse.Namespace) -> Any:
    """The settings dataclass ``settings`` made from parsed ``args`` (which checks how its values go together)."""
    return settings(**{field.name: getattr(args, field.name) for field in dataclasses.fields(settings)})


def split_from_arguments(args: argparse.Namespace, purpose: str) -> str | None:
    """The split :func:`dataset_from_arguments` reads: ``--split``, else the dataset's default for
    ``purpose`` (``"train"`` or ``"eval"``); None for ToyCity, which has seeds, not splits."""
    return None if args.data == "toycity" else args.split or DEFAULT_SPLITS[(args.data, purpose)]


def dataset_from_arguments(args: argparse.Namespace, purpose: str, transforms: Transforms | None = None) -> torch.utils.data.Dataset:
    """The dataset the options of :func:`add_dataset_arguments` name, for ``purpose`` ``"train"`` or ``"eval"``."""
    return load_dataset(args.data, purpose, root=args.root, split=split_from_arguments(args, purpose), scale=args.scale,
                        length=args.length, seed=args.data_seed, height=args.height, width=args.width, transforms=transforms)
