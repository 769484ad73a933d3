"""The official Cityscapes instance-level evaluation, run on our predictions.

cityscapesscripts' ``evalInstanceLevelSemanticLabeling`` reads one text file per image,
``<city>_<seq>_<frame>_pred.txt``, with one line per predicted instance::

    masks/<city>_<seq>_<frame>_007.png 26 0.913

(a binary mask PNG relative to the text file, the Cityscapes *label id* - 26 is car - and a
confidence). It differs from COCO's AP in ways worth knowing: IoU thresholds 0.50:0.05:0.95 are
the same, but the precision-recall curve is integrated step-wise rather than sampled at 101 recall
points; ground-truth instances under 100 pixels and group regions are ignored; and a false
positive lying mostly on void pixels, groups or such small instances is not counted.

The script keeps its settings in a module-level object and caches the ground truth in a
``gtInstances.json`` next to its own source file; :func:`cityscapes_official_eval` copies the
settings, moves that cache into ``out_dir`` and deletes it first, so that a changed dataset is
never scored against stale ground truth. It then runs the script's steps one by one (see there
for two NumPy 2 incompatibilities of cityscapesscripts 2.3.0 that it works around).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import types
from pathlib import Path
from typing import Sequence
from unittest import mock

import numpy as np
from PIL import Image
from torch import nn

from course_lib import environment
from course_lib.classes import CLASSES, INDEX_TO_CITYSCAPES_ID
from course_lib.data.cityscapes import DOWNLOAD_CITYSCAPES, CityscapesInstances, cityscapes_pairs
from course_lib.errors import MissingData
from course_lib.evaluation.inference import inference_on_dataset
from course_lib.structures.masks import binary_masks

GT_SUFFIX = "_gtFine_instanceIds.png"


def _numpy_with_in1d() -> types.ModuleType:
    """numpy plus ``in1d``, which cityscapesscripts 2.3.0 calls and NumPy 2.4 removed.

    Handed to the evaluation module alone (``mock.patch.object``) for the duration of a call,
    so numpy itself is never modified.
    """
    shim = types.ModuleType("numpy")
    shim.__dict__.update(np.__dict__)
    shim.in1d = lambda values, test_values: np.isin(values, test_values).ravel()
    return shim


def write_prediction_files(prediction: dict, frame: str, out_dir: Path, size: tuple[int, int]) -> Path:
    """Write one image's masks and its ``<frame>_pred.txt`` into ``out_dir``; returns the text file.

    ``size`` (H, W) is the ground truth's: masks predicted on a downscaled image are resized
    (nearest) back to it, since the evaluator compares pixel by pixel.
    """
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    lines = []
    masks = binary_masks(prediction["masks"]).cpu().numpy().astype(np.uint8)
    for k, (mask, label, score) in enumerate(zip(masks, prediction["labels"].tolist(), prediction["scores"].tolist())):
        picture = Image.fromarray(mask * 255)
        if picture.size != (size[1], size[0]):
            picture = picture.resize((size[1], size[0]), Image.NEAREST)
        relative = f"masks/{frame}_{k:03d}.png"
        picture.save(out_dir / relative)
        lines.append(f"{relative} {INDEX_TO_CITYSCAPES_ID[label]} {score:.6f}\n")
    text_file = out_dir / f"{frame}_pred.txt"
    text_file.write_text("".join(lines))
    return text_file


def cityscapes_official_eval(predictions: Sequence[dict], gt_folder: str | Path, split: str = "val",
                             out_dir: str | Path = "cityscapes_results", quiet: bool = True) -> dict:
    """Score ``predictions`` with cityscapesscripts on ``gt_folder/gtFine/split``.

    ``predictions[i]`` belongs to the i-th image of ``CityscapesInstances(gt_folder, split)``
    (sorted file order). Returns ``{"AP", "AP50", "per_class": {name: {"AP", "AP50"}}, "result_file"}``
    with NaN for classes that have neither ground truth nor predictions.
    """
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as official

    pairs = cityscapes_pairs(gt_folder, split)
    if len(predictions) != len(pairs):
        raise ValueError(f"{len(predictions)} predictions for the {len(pairs)} images of {gt_folder}/gtFine/{split}")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    text_files, gt_files = [], []
    for prediction, (_, gt_path) in zip(predictions, pairs):
        with Image.open(gt_path) as gt:
            size = (gt.height, gt.width)
        frame = gt_path.name.removesuffix(GT_SUFFIX)
        text_files.append(str(write_prediction_files(prediction, frame, out_dir, size)))
        gt_files.append(str(gt_path.resolve()))

    args = copy.copy(official.args)
    args.predictionPath, args.predictionWalk = str(out_dir), None
    args.gtInstancesFile = str(out_dir / "gtInstances.json")
    args.quiet, args.colorized, args.csv = quiet, False, False
    Path(args.gtInstancesFile).unlink(missing_ok=True)
    log = io.StringIO()
    try:
        # The steps of official.evaluateImgLists, minus its matches.json debug dump (which fails on
        # NumPy 2 integers and would land in the current directory).
        with mock.patch.object(official, "np", _numpy_with_in1d()), \
                (contextlib.redirect_stdout(log) if quiet else contextlib.nullcontext()):
            official.setInstanceLabels(args)
            gt_instances = official.getGtInstances(gt_files, args)
            matches = official.matchGtWithPreds(text_files, gt_files, gt_instances, args)
            aps = official.evaluateMatches(matches, args)
            averages = official.computeAverages(aps, args)
            if not quiet:
                official.printResults(averages, args)
    except SystemExit as error:  # cityscapesscripts reports errors by printing and calling sys.exit
        raise RuntimeError(f"cityscapesscripts evaluation failed: {log.getvalue().strip()}") from error
    result_file = out_dir / "resultInstanceLevelSemanticLabeling.json"
    result_file.write_text(json.dumps(official.prepareJSONDataForResults(averages, aps, args), indent=2, default=float))
    return {
        "AP": float(averages["allAp"]),
        "AP50": float(averages["allAp50%"]),
        "per_class": {name: {"AP": float(averages["classes"][name]["ap"]), "AP50": float(averages["classes"][name]["ap50%"])}
                      for name in CLASSES[1:]},
        "result_file": str(result_file),
    }


def evaluate_cityscapes(model: nn.Module, out_dir: str | Path, root: str | Path | None = None, split: str = "val",
                        device: str | None = None, batch_size: int = 1) -> dict:
    """``model``'s predictions on every image of a Cityscapes split, scored by the official evaluator:
    :func:`cityscapes_official_eval`'s result, its files in ``out_dir``.

    ``root``: the Cityscapes folder (default: ``CITYSCAPES_DATASET``, :func:`course_lib.environment.cityscapes_root`).
    Images are read at their native 1024 x 2048, one per batch by default.
    """
    root = root if root is not None else environment.cityscapes_root()
    if root is None:
        raise MissingData("no Cityscapes folder: pass root=... or set CITYSCAPES_DATASET to a folder holding leftImg8bit/ "
                          "and gtFine/. To get it: " + DOWNLOAD_CITYSCAPES.format(root="/path/to/cityscapes"))
    predictions, _ = inference_on_dataset(model, CityscapesInstances(root, split=split), device=device, batch_size=batch_size)
    return cityscapes_official_eval(predictions, root, split, out_dir)


def format_official(result: dict) -> str:
    """Plain-text table of :func:`cityscapes_official_eval` output."""
    lines = [f"Cityscapes official: AP {result['AP']:.3f}  AP50 {result['AP50']:.3f}"]
    lines += [f"{name:12s} AP {row['AP']:.3f}  AP50 {row['AP50']:.3f}" for name, row in result["per_class"].items()]
    return "\n".join(lines).replace("nan", "  - ")
