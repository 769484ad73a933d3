"""Compare ToyCity training runs on held-out splits larger than the one they were trained against.

    python data_scripts/compare_toycity_runs.py shipped plain_s1=runs/plain_s1 rfs_s0=runs/rfs_s0 \\
        --length 500 --data-seeds 1000000 2000000 --out course_lib/assets/results/toycity_runs_500.json

Each run is ``NAME=FOLDER`` (what ``data_scripts/train_toycity.py --no-install --out FOLDER``
wrote: ``toycity_maskrcnn.pt``, its manifest and ``toycity_training.json``) or ``shipped`` (the
model in ``course_lib/assets``). The script evaluates every run's weights with pycocotools on
``--length`` scenes from each ``--data-seeds`` seed at the run's own image size, prints one row per
run (training time, the AP its training script measured, the AP on each split, the mean AP of
``--rare-class``, ToyCity's rarest class ``train`` by default) and writes the table as JSON. The 100 held-out scenes of ``train_toycity.py`` hold
about 10 trains; 500 hold about 60, enough to tell a few points apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from course_lib import environment, zoo
from course_lib.data.toycity import HELD_OUT_SEED, ToyCityDataset
from course_lib.utils import timing
from course_lib.evaluation.inference import inference_on_dataset
from course_lib.evaluation.coco_eval import coco_metrics

ASSETS = Path(__file__).resolve().parents[1] / "course_lib" / "assets"


def run_files(spec: str) -> tuple[str, Path, Path]:
    """``NAME=FOLDER`` or ``shipped`` -> (name, weights, training results)."""
    if spec == "shipped":
        return "shipped", ASSETS / "toycity_maskrcnn.pt", ASSETS / "results" / "toycity_training.json"
    name, sep, folder = spec.partition("=")
    if not sep:
        raise SystemExit(f"run {spec!r}: write NAME=FOLDER (a train_toycity.py --out folder) or 'shipped'")
    folder = Path(folder)
    weights, training = folder / "toycity_maskrcnn.pt", folder / "toycity_training.json"
    for path in (weights, weights.with_suffix(".json"), training):
        if not path.is_file():
            raise SystemExit(f"run {name}: missing {path}; train it with python data_scripts/train_toycity.py --no-install --out {folder}")
    return name, weights, training


def evaluate_run(spec: str, length: int, data_seeds: list[int], rare_class: str) -> dict:
    """One row of the table: the run's training record and its mask AP on each held-out split."""
    name, weights, training_file = run_files(spec)
    results = json.loads(training_file.read_text())
    model = zoo.from_command_line(str(weights), device="cpu")
    size = model.transform.min_size[0], model.transform.max_size
    row = {"run": name, "command": results["command"], "train_wall_s": results["training"]["train_wall_s"],
           "label_scan_s": results["training"].get("label_scan_s", 0.0), "trained_at": results["training"]["date"],
           "trained_on": results["training"].get("cpu", "not recorded"),
           "training_split": results["training"]["val_scenes"], "training_split_segm_AP": results["final"]["segm"]["AP"],
           "splits": {}}
    for seed in data_seeds:
        metrics = coco_metrics(*inference_on_dataset(model, ToyCityDataset(length, seed=seed, height=size[0], width=size[1]),
                                        device="cpu", batch_size=4))
        row["splits"][str(seed)] = {"segm_AP": metrics["segm"]["AP"], "bbox_AP": metrics["bbox"]["AP"],
                                    "segm_per_class": {c: v["AP"] for c, v in metrics["segm"]["per_class"].items()}}
    row["mean_segm_AP"] = sum(s["segm_AP"] for s in row["splits"].values()) / len(data_seeds)
    row[f"mean_{rare_class}_segm_AP"] = sum(s["segm_per_class"][rare_class] for s in row["splits"].values()) / len(data_seeds)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=FOLDER of a train_toycity.py --no-install run, or 'shipped'")
    parser.add_argument("--length", type=int, default=500, help="scenes per held-out split")
    parser.add_argument("--data-seeds", type=int, nargs="+", default=[HELD_OUT_SEED, 2 * HELD_OUT_SEED],
                        help=f"first scene seed of each split ({HELD_OUT_SEED} is course_lib.data.toycity.held_out's, whose first 100 train_toycity.py evaluated)")
    parser.add_argument("--rare-class", default="train", help="the class whose AP gets its own column")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="write the table as JSON to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = [evaluate_run(spec, args.length, args.data_seeds, args.rare_class) for spec in args.runs]
    environment.print_banner(", ".join(r["run"] for r in rows), f"ToyCity held-out, {args.length} scenes from seeds {args.data_seeds}")
    header = f"{'run':<12} {'train s':>8} {'AP(train split)':>15} " + " ".join(f"{'AP@' + str(s):>10}" for s in args.data_seeds) \
        + f" {'mean':>6} {args.rare_class + ' AP':>9}"
    print(header)
    for r in rows:
        print(f"{r['run']:<12} {r['train_wall_s']:>8.0f} {r['training_split_segm_AP']:>15.3f} "
              + " ".join(f"{r['splits'][str(s)]['segm_AP']:>10.3f}" for s in args.data_seeds)
              + f" {r['mean_segm_AP']:>6.3f} {r[f'mean_{args.rare_class}_segm_AP']:>9.3f}")
    if args.out:
        table = {"what": "ToyCity training runs: pycocotools mask AP on larger held-out splits (data_scripts/compare_toycity_runs.py)",
                 **timing.machine_record(torch.device("cpu"), command="python data_scripts/compare_toycity_runs.py "
                                         + " ".join(sys.argv[1:] if argv is None else argv)),
                 "evaluated_on": timing.device_name(torch.device("cpu")),  # the name the appendix reads
                 "length": args.length, "data_seeds": args.data_seeds, "runs": rows}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(table, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
