"""The video command's time budget, step by step from eager FP32 to the cached INT8 export, as one results file.

    python data_scripts/video_budget.py --out course_lib/assets/results/video_budget.json

A learner's run: ``python -m course_lib video CLIP OUT.mp4 --track`` on a generated ToyCity clip
(``--frames`` frames of 256 x 512, side-by-side output), each row a fresh process with ``--bench``,
so that its whole-command time includes Python's start-up as a learner's does. The rows, in order:

* ``eager FP32, serial``: the PyTorch model, every stage one after another (the pipeline before);
* ``eager FP32, streaming``: decode and encode on their own threads;
* ``ov_int8@fast, first run``: OpenVINO INT8 with the ``fast`` settings, exported and calibrated
  into an empty export cache (what every run paid before the cache);
* ``ov_int8@fast, cached, serial`` and ``ov_int8@fast, cached, streaming``: the same, from the cache.

Each row's mask AP is that of its settings on the held-out ToyCity split at the size the model sees
these frames at (128 x 256), read from ``deploy_cpu.json`` (``baseline`` and ``ov_int8@fast``, calibrated
on the same ToyCity training scenes: ``--calibration`` is set to that file's). The
file records the machine, its load before and after, and refuses a busy machine (``--force-loaded``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from course_lib.data.toycity import clip
from course_lib.errors import MachineBusy
from course_lib.results import load_results
from course_lib.tracking.video_io import write_mp4
from course_lib.utils.atomic import write_json
from course_lib.utils.timing import load_average_1min, machine_record

#: (row name, ``video`` options, the deploy_cpu.json row holding its settings' mask AP); the rows share one
#: export cache, empty before the first ``--runtime`` row
ROWS = [
    ("eager FP32, serial", ["--pipeline", "serial"], "baseline"),
    ("eager FP32, streaming", [], "baseline"),
    ("ov_int8@fast, first run (export and calibration)", ["--runtime", "ov_int8@fast"], "ov_int8@fast"),
    ("ov_int8@fast, cached, serial", ["--runtime", "ov_int8@fast", "--pipeline", "serial"], "ov_int8@fast"),
    ("ov_int8@fast, cached, streaming", ["--runtime", "ov_int8@fast"], "ov_int8@fast"),
]


def run_row(clip_path: Path, options: list[str], cache: Path, workdir: Path) -> dict:
    """The ``--bench`` record of one ``python -m course_lib video`` process."""
    bench = workdir / "bench.json"
    bench.unlink(missing_ok=True)
    command = [sys.executable, "-m", "course_lib", "video", str(clip_path), str(workdir / "out.mp4"), "--track",
               "--bench", str(bench), "--force-loaded", *options]  # the script checks the load over all rows
    subprocess.run(command, check=True, env={**os.environ, "COURSE_EXPORT_CACHE": str(cache)})
    return json.loads(bench.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="results file to write")
    parser.add_argument("--frames", type=int, default=60, help="clip length")
    parser.add_argument("--seed", type=int, default=0, help="ToyCity clip seed")
    parser.add_argument("--force-loaded", action="store_true", help="write the file even if the machine is busy (recorded)")
    args = parser.parse_args(argv)
    load_before = load_average_1min()
    deploy_file = load_results("deploy_cpu.json")
    deploy = {row["name"]: row for row in deploy_file["variants"]}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        clip_path = write_mp4((image for image, _ in clip(args.seed, args.frames, 256, 512)), workdir / "clip.mp4", 25)
        for name, options, ap_row in ROWS:
            calibration = ["--calibration", str(deploy_file["calibration_images"])] if "--runtime" in options else []
            bench = run_row(clip_path, options + calibration, workdir / "cache", workdir)  # calibrated as deploy_cpu.json's
            rows.append({"name": name, "options": options, "mask_AP": deploy[ap_row]["mask_AP"], "mask_AP_from": ap_row,
                         "fps": bench["budget"]["fps"], "command_s": bench["command_s"], "export_cache": bench["export_cache"],
                         "budget": bench["budget"], "load_average_1min": bench["load_average_1min"]})
            print(f"{name}: {bench['budget']['fps']:.1f} frames/s, whole command {bench['command_s']:.1f} s")
    try:
        machine = machine_record(torch.device("cpu"), load_before, args.force_loaded,
                                 command="python data_scripts/video_budget.py " + " ".join(sys.argv[1:] if argv is None else argv))
    except MachineBusy as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_json(args.out, {
        "what": "python -m course_lib video --track on a ToyCity clip, side by side: time per stage and whole command, "
                "from eager FP32 to the cached INT8 export (data_scripts/video_budget.py)",
        **machine,
        "clip": {"frames": args.frames, "size": [256, 512], "seed": args.seed, "fps": 25},
        "mask_AP_source": "deploy_cpu.json: held-out ToyCity scenes at 128x256, the size the model sees these frames at",
        "rows": rows,
    })
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
