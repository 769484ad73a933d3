"""Export ToyCity to the files of real datasets, or measure how fast it generates.

    python data_scripts/make_toycity.py --format coco --split val --count 200 --out data/toycity_coco
    python data_scripts/make_toycity.py --format cityscapes --split train --count 500 --out data/toycity_cs
    python data_scripts/make_toycity.py --format mots --split train --count 4 --frames 60 --out data/toycity_mots
    python data_scripts/make_toycity.py --bench --count 50 --json bench.json

Scenes use seeds ``--seed .. --seed + count - 1`` (their ``image_id``); use far-apart seeds
for different splits. ``mots`` writes ``count`` clips in the MOTSChallenge layout
(``{split}/toycity-NN/img1/000001.png``, ``gt/gt.txt``, ``seqinfo.ini``). ``--bench`` times
``scene()`` and ``clip()`` in this process (set ``OMP_NUM_THREADS=1`` for one core) and prints
images per second, with the CPU time per scene and the load average (a busy machine stretches wall
time, not CPU time); ``--json`` is written only when the load average stayed at or below the core
count, unless ``--force-loaded``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import torch
from tqdm.auto import tqdm

from course_lib.data.toycity import clip, scene
from course_lib.data.toycity.export import write_cityscapes, write_coco
from course_lib import results
from course_lib.errors import MachineBusy
from course_lib.evaluation.mots import write_mots
from course_lib.utils import timing


def scenes(args, semantic: bool):
    for seed in tqdm(range(args.seed, args.seed + args.count), desc="scenes", unit="img"):
        yield scene(seed, args.height, args.width, semantic=semantic)


def export_mots(args) -> Path:
    """``count`` clips as MOTSChallenge sequences; returns the split folder."""
    split_dir = Path(args.out) / args.split
    for k in tqdm(range(args.count), desc="clips", unit="clip"):
        seq_dir = split_dir / f"toycity-{k + 1:02d}"
        frames = clip(args.seed + k, args.frames, args.height, args.width)
        (seq_dir / "img1").mkdir(parents=True, exist_ok=True)
        for t, (image, _) in enumerate(frames, start=1):
            cv2.imwrite(str(seq_dir / "img1" / f"{t:06d}.png"), image[:, :, ::-1])
        write_mots(seq_dir / "gt" / "gt.txt", [target for _, target in frames])
        (seq_dir / "seqinfo.ini").write_text(
            f"[Sequence]\nname=toycity-{k + 1:02d}\nimDir=img1\nframeRate=10\nseqLength={args.frames}\n"
            f"imWidth={args.width}\nimHeight={args.height}\nimExt=.png\n")
    return split_dir


def bench(args) -> dict:
    """Images per second of ``scene()`` (median over ``count`` scenes after one warm-up) and of ``clip()``
    frames (one clip of ``count`` frames: each frame moves on from the last), at the requested size."""
    cpu = torch.device("cpu")

    def cpu_seconds_of_scene(index: int) -> float:
        start = time.process_time()
        scene(args.seed + index, args.height, args.width)
        return time.process_time() - start

    rounds = timing.interleaved({"scene": cpu_seconds_of_scene}, cpu, warmup=1, repeats=args.count)
    wall, cpu_time = timing.summary(rounds.seconds["scene"]), timing.summary(rounds.outputs["scene"])
    with timing.Stopwatch(cpu) as clip_clock:
        clip(args.seed, args.count, args.height, args.width)
    return {
        "what": "course_lib.data.toycity generation speed, ground truth included",
        "size": [args.height, args.width],
        "count": args.count,
        "scene_images_per_s": 1 / wall.median,
        "scene_seconds_each": wall.median,
        "scene_p90_seconds": wall.p90,
        # CPU time is what one core spends; wall time also counts waiting for a shared machine
        "scene_cpu_seconds_each": cpu_time.median,
        "clip_frames_per_s": args.count / clip_clock.seconds,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "platform": platform.platform(),
        "opencv": cv2.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", choices=["coco", "cityscapes", "mots"], help="what to export")
    parser.add_argument("--bench", action="store_true", help="measure images/s instead of exporting")
    parser.add_argument("--out", help="output folder (export)")
    parser.add_argument("--json", help="also write the benchmark result to this JSON file")
    parser.add_argument("--force-loaded", action="store_true",
                        help="write --json even when the load average exceeds the core count (recorded in the file)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--count", type=int, default=100, help="scenes (coco, cityscapes, bench) or clips (mots)")
    parser.add_argument("--frames", type=int, default=30, help="frames per clip (mots)")
    parser.add_argument("--seed", type=int, default=0, help="first scene seed")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--group-area", type=int, default=0,
                        help="cityscapes: instances smaller than this many pixels become <class>group regions")
    args = parser.parse_args(argv)
    if args.bench == bool(args.format):
        parser.error("give either --format (to export) or --bench")
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.bench:
        load_before = timing.load_average_1min()
        result = bench(args)
        print(f"ToyCity {args.height}x{args.width}: {result['scene_images_per_s']:.1f} scenes/s "
              f"({1000 * result['scene_seconds_each']:.1f} ms wall, {1000 * result['scene_cpu_seconds_each']:.1f} ms CPU "
              f"each, medians of {args.count}), {result['clip_frames_per_s']:.1f} clip frames/s")
        try:  # printed above in any case; written only from a quiet machine (or with --force-loaded)
            result |= timing.machine_record(torch.device("cpu"), load_before, force=args.force_loaded or not args.json,
                                            command="python data_scripts/make_toycity.py "
                                            + " ".join(sys.argv[1:] if argv is None else argv))
        except MachineBusy as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(results.load_text(result))
        if args.json:
            print(f"wrote {results.save_results(result, args.json)}")
        return 0
    if not args.out:
        parser.error("--out is required to export")
    if args.format == "coco":
        path = write_coco(args.out, args.split, scenes(args, semantic=False))
    elif args.format == "cityscapes":
        write_cityscapes(args.out, args.split, scenes(args, semantic=True), group_area=args.group_area)
        path = Path(args.out)
    else:
        path = export_mots(args)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
