"""``python -m course_lib eval``: the command line of :mod:`course_lib.evaluation.coco_eval` (argparse lives here, not in the library)."""

from __future__ import annotations

import dataclasses

import torch

from course_lib import environment, zoo
from course_lib.cli import options
from course_lib.data.toycity import HELD_OUT_SEED
from course_lib.evaluation import inference
from course_lib.cli.settings import EvalSettings
from course_lib.errors import BadInput
from course_lib.evaluation import coco_eval, matched_masks
from course_lib.evaluation.cityscapes_eval import cityscapes_official_eval, format_official
from course_lib.evaluation.failures import failure_analysis
from course_lib.utils.atomic import write_json
from course_lib.utils.outputs import check_output, check_writable_folder


def cli(argv: list[str]) -> int:
    """``python -m course_lib eval --data toycity|cityscapes|coco --model toycity|coco|CHECKPOINT [...]``."""
    parser = options.ArgumentParser(prog="python -m course_lib eval", description=coco_eval.__doc__.splitlines()[0])
    options.add_dataset_arguments(parser, toycity_length=100, toycity_seed=HELD_OUT_SEED)  # the split training never sees
    options.add_model_arguments(parser, required=True)
    parser.add_argument("--limit", type=int, help="evaluate only the first N images")
    options.add_settings_arguments(parser, EvalSettings)
    parser.add_argument("--official", metavar="OUT_DIR", help="Cityscapes: also run the official evaluator, writing its files here")
    parser.add_argument("--json", metavar="FILE", help="write the metrics as JSON to FILE")
    args = parser.parse_args(argv)
    settings = options.settings_from_arguments(EvalSettings, args)
    if args.official and (args.data != "cityscapes" or args.limit is not None):
        parser.error("--official needs --data cityscapes and every image of the split (no --limit)")
    if args.limit is not None and args.limit < 1:
        raise BadInput(f"--limit {args.limit}: evaluate at least 1 image (leave --limit out for all of them)")
    if args.json:  # before minutes of inference, not after
        check_output(args.json, "--json", inputs=(args.model, args.root))
    if args.official:
        check_writable_folder(args.official, "--official")

    device = environment.device()
    dataset = options.dataset_from_arguments(args, "eval")
    if len(dataset) == 0:
        raise BadInput(f"the {args.data} evaluation set is empty: metrics of no images are undefined; "
                       "give at least 1 image (for ToyCity, --length 1 or more)")
    if args.limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(args.limit, len(dataset))))
    model = zoo.from_command_line(args.model, args.arch, device)
    predictions, targets = inference.inference_on_dataset(model, dataset, device, settings.batch_size)
    metrics = coco_eval.coco_metrics(predictions, targets)
    metrics["mask_iou"] = matched_masks.mean_matched_mask_iou(predictions, targets)
    split = options.split_from_arguments(args, "eval")
    environment.print_banner(args.model, f"{args.data} {split or f'scenes from seed {args.data_seed}'} ({len(dataset)} images)")
    print(coco_eval.format_metrics(metrics))
    print(failure_analysis(predictions, targets).table())
    if args.official:
        official = cityscapes_official_eval(predictions, args.root, split, args.official)
        print(format_official(official))
        metrics["cityscapes_official"] = official
    if args.json:
        write_json(args.json, {**metrics, "settings": dataclasses.asdict(settings)}, indent=2)
    return 0
