"""Train the offline ToyCity model that ships as ``course_lib/assets/toycity_maskrcnn.pt``.

    python data_scripts/train_toycity.py --repeat-threshold 0.44 --steps 1650   # the committed model (~9-10 min, 2 CPU cores)
    python data_scripts/train_toycity.py --steps 40 --out /tmp/toy --no-install   # a smoke run

It trains ``course_lib.modeling.maskrcnn.build('toycity_small')`` with ``course_lib.engine.trainer.train`` on freshly
generated ToyCity scenes (scene seeds 0..N-1, each seen at most once, so no augmentation is needed),
evaluates pycocotools box and mask AP on a fixed held-out split (``course_lib.data.toycity.held_out``)
every ``--eval-every`` steps, and writes

* ``course_lib/assets/toycity_maskrcnn.pt``: the state dict (what ``course_lib.zoo.load('toycity')`` loads);
* ``course_lib/assets/toycity_maskrcnn.json``: the manifest (sha256, arch, build_kwargs, this command,
  training time, final metrics);
* ``course_lib/assets/results/toycity_training.json``: AP against training time, losses, per-class table.

Training time counts optimizer steps only (not evaluation); wall and CPU seconds are both recorded
(with two threads the CPU seconds run up to twice the wall seconds), and the 1-minute load average
before and after, because other processes sharing the machine stretch the wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from course_lib import environment
from course_lib.cli import options
from course_lib.data import sampling
from course_lib.data.toycity import HELD_OUT_SEED, ToyCityDataset, held_out
from course_lib.utils import timing
from course_lib.engine import distributed
from course_lib.engine.checkpoint import claimed_run_folder, save_checkpoint
from course_lib.evaluation.inference import inference_on_dataset
from course_lib.engine.recipes import AMP_OPTIONS, RECIPES, amp_setting
from course_lib.engine.settings import TrainSettings
from course_lib.engine.trainer import train
from course_lib.errors import UserError
from course_lib.evaluation.coco_eval import coco_metrics
from course_lib.modeling import maskrcnn as models
from course_lib.utils.atomic import write_json
from course_lib.utils.download import file_digest

ASSETS = Path(__file__).resolve().parents[1] / "course_lib" / "assets"


def ap_summary(metrics: dict) -> dict[str, float]:
    """The headline numbers of :func:`course_lib.evaluation.coco_eval.coco_metrics` as flat keys."""
    return {f"{t}_{k}": metrics[t][k] for t in ("bbox", "segm") for k in ("AP", "AP50", "AP75")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_settings_arguments(parser, TrainSettings, RECIPES["toycity"])  # as `python -m course_lib train --recipe toycity`
    parser.add_argument("--resume", action="store_true", help="continue from --out's last.pt")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--mask-targets", choices=("soft", "binary"), default="binary",
                        help="the mask head's 28x28 targets: torchvision's soft ones or the paper's binary ones")
    parser.add_argument("--mask-stem-channels", type=int, default=32,
                        help="channels of the stride-2 stem the mask head also reads (0: torchvision's mask head alone)")
    parser.add_argument("--mask-head-channels", type=int, default=128,
                        help="width of the mask head's convolutions (the FPN's 128 in torchvision's design; a multiple of 64 with the stem, of 32 without)")
    parser.add_argument("--mask-dice-weight", type=float, default=3.0,
                        help="factor on a dice term added to the mask head's cross-entropy (0: the paper's loss)")
    parser.add_argument("--mask-loss-weight", type=float, default=2.0, help="factor on the mask loss in the total")
    parser.add_argument("--class-agnostic-masks", action="store_true",
                        help="one mask map for all classes instead of one per class")
    parser.add_argument("--box-rois", type=int, default=128,
                        help="RoIs sampled per image to train the box head (positives up to --box-positive-fraction of them)")
    parser.add_argument("--box-positive-fraction", type=float, default=0.25,
                        help="share of the --box-rois sampled RoIs per image that may be positives; the mask head trains on those")
    parser.add_argument("--input-scale", type=float, default=1.0,
                        help="the model resizes each scene by this factor before the backbone (anchors scale with it)")
    parser.add_argument("--val-length", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=140, help="steps between held-out evaluations")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads in all (split over the processes)")
    parser.add_argument("--out", default="runs/toycity", help="checkpoints and TensorBoard logs")
    parser.add_argument("--no-install", action="store_true", help="write the weights to --out, not course_lib/assets")
    args = parser.parse_args(argv)
    command = "python data_scripts/train_toycity.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        settings = options.settings_from_arguments(TrainSettings, args)
        # checked and locked before the worker processes start (under torchrun, by rank 0)
        with claimed_run_folder(args.out, args.resume) if distributed.writes_outputs() else contextlib.nullcontext():
            distributed.launch(run, args, settings, command, processes=settings.processes,
                               threads_per_process=max(1, args.threads // settings.processes))
    except UserError as error:
        parser.error(str(error))
    except KeyboardInterrupt as interrupt:  # Ctrl-C: train() saved last.pt at the end of the step
        print(f"interrupted: {interrupt}" if str(interrupt) else "interrupted", file=sys.stderr)
        return 130
    return 0


def run(args: argparse.Namespace, settings: TrainSettings, command: str) -> None:
    """Train, evaluate and write the results (in each process of ``--processes``; rank 0 writes)."""
    rank, _ = distributed.rank_and_world()
    build_kwargs = _build_kwargs(args)
    train_set = ToyCityDataset(settings.steps * settings.batch_size, seed=0, height=args.height, width=args.width)
    val_set = held_out(args.val_length, args.height, args.width)
    scan_started = time.perf_counter()
    factors = sampling.dataset_repeat_factors(train_set, settings.repeat_threshold, progress=rank == 0) if settings.repeat_threshold else None
    label_scan_s = time.perf_counter() - scan_started  # rendering every training scene once to read its classes
    environment.seed_everything(settings.seed)
    # The loss options only change training: the manifest's build_kwargs are what inference needs.
    model = models.build("toycity_small", **build_kwargs, mask_targets=args.mask_targets, mask_dice_weight=args.mask_dice_weight)
    latest: dict = {}  # full metrics of the last evaluation (train() evaluates once more at the end)
    out = Path(args.out)
    if rank == 0:
        print(environment.banner("toycity_small (training)", f"ToyCity {args.height}x{args.width}, held-out {args.val_length} scenes"))
    load_before = timing.load_average_1min()  # other work on the machine stretches the wall time: record it
    started = time.perf_counter()
    history = train(
        model, train_set, settings, loss_weights={"loss_mask": args.mask_loss_weight},
        checkpoint_dir=out, checkpoint_every=args.eval_every, log_dir=out / "tensorboard", resume=args.resume,
        eval_fn=_held_out_eval(val_set, args.threads, latest), eval_every=args.eval_every, device=torch.device("cpu"),
        repeat_factors=factors,
    )
    timings = {"label_scan_s": label_scan_s, "total_wall_s_with_eval": time.perf_counter() - started,
               "train_cpu_s": sum(distributed.gather(history["train_cpu_s"])),  # each process counts its own
               "load_before": load_before}
    if rank == 0:
        _write_results(args, command, model, build_kwargs, history, _training_record(args, settings, history, timings, command), latest)


def _build_kwargs(args: argparse.Namespace) -> dict:
    """The ``build('toycity_small', ...)`` arguments inference needs (what the manifest records)."""
    build_kwargs: dict = {"min_size": round(args.height * args.input_scale), "max_size": round(args.width * args.input_scale),
                          "mask_stem_channels": args.mask_stem_channels, "mask_head_channels": args.mask_head_channels, "box_batch_size_per_image": args.box_rois, "box_positive_fraction": args.box_positive_fraction,
                          "class_agnostic_masks": args.class_agnostic_masks}
    if args.input_scale != 1:
        build_kwargs["anchor_sizes"] = [round(s * args.input_scale) for s in models.TOYCITY_ANCHOR_SIZES]
    return build_kwargs


def _held_out_eval(val_set: ToyCityDataset, threads: int, latest: dict) -> Callable[[torch.nn.Module], dict[str, float]]:
    """The ``eval_fn`` of :func:`train`: AP on ``val_set`` with ``threads`` threads; the full metrics land in ``latest``."""
    def eval_fn(m: torch.nn.Module) -> dict[str, float]:
        start, threads_before = time.perf_counter(), torch.get_num_threads()
        torch.set_num_threads(threads)  # rank 0 evaluates alone while the other processes wait
        latest.update(coco_metrics(*inference_on_dataset(m, val_set, device="cpu", batch_size=8)))
        torch.set_num_threads(threads_before)
        summary = ap_summary(latest)
        print(f"  held-out: segm AP {summary['segm_AP']:.3f}  AP50 {summary['segm_AP50']:.3f}  bbox AP {summary['bbox_AP']:.3f}")
        return {**summary, "eval_s": time.perf_counter() - start}

    return eval_fn


def _training_record(args: argparse.Namespace, settings: TrainSettings, history: dict, timings: dict, command: str) -> dict:
    """How the model was trained, on what, how long, on which machine (the manifest's and results' ``training``)."""
    return {
        **dataclasses.asdict(settings), "amp_bf16": amp_setting(AMP_OPTIONS[settings.amp], torch.device("cpu"))[0],
        "mask_targets": args.mask_targets, "mask_dice_weight": args.mask_dice_weight, "mask_loss_weight": args.mask_loss_weight,
        "label_scan_s": round(timings["label_scan_s"], 1), "threads": args.threads,
        "train_scenes": f"ToyCityDataset(seed=0, length={settings.steps * settings.batch_size}) at {args.height}x{args.width}",
        "val_scenes": f"ToyCityDataset(seed={HELD_OUT_SEED}, length={args.val_length}) at {args.height}x{args.width}",
        "train_wall_s": round(history["train_wall_s"], 1), "train_cpu_s": round(timings["train_cpu_s"], 1),
        "total_wall_s_with_eval": round(timings["total_wall_s_with_eval"], 1),
        # recorded, never refused: the weights of a long run are worth keeping; the record says if it was busy
        **timing.machine_record(torch.device("cpu"), timings["load_before"], force=True, command=command),
    }


def _write_results(args: argparse.Namespace, command: str, model: torch.nn.Module, build_kwargs: dict, history: dict,
                   training: dict, final: dict) -> None:
    """Write the weights, their manifest and the results file (into --out with --no-install, else the assets)."""
    out = Path(args.out)
    weights = (out if args.no_install else ASSETS) / "toycity_maskrcnn.pt"
    save_checkpoint(model.state_dict(), weights)
    manifest = {
        "file": weights.name, "sha256": file_digest(weights), "bytes": weights.stat().st_size,
        "arch": "toycity_small", "build_kwargs": build_kwargs, "command": command,
        "training": training, "metrics": {**ap_summary(final), "per_class_segm": final["segm"]["per_class"]},
    }
    results = {
        "what": "toycity_small trained with course_lib.engine.trainer on ToyCity; pycocotools AP on held-out scenes vs training time",
        "command": command, "training": training,
        "curve": history["eval"],
        "loss": [{k: round(v, 4) for k, v in r.items()} for r in history["loss"]],
        "final": final,
    }
    manifest_path = weights.with_suffix(".json")
    results_path = (out if args.no_install else ASSETS / "results") / "toycity_training.json"
    write_json(manifest_path, manifest)
    write_json(results_path, results)
    print(f"segm AP {final['segm']['AP']:.3f} (AP50 {final['segm']['AP50']:.3f}), bbox AP {final['bbox']['AP']:.3f} "
          f"after {history['train_wall_s']:.0f} s wall / {training['train_cpu_s']:.0f} s CPU of training")
    print(f"wrote {weights} ({manifest['bytes'] / 1e6:.1f} MB), {manifest_path}, {results_path}")


if __name__ == "__main__":
    sys.exit(main())
