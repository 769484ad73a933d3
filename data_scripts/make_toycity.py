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
time, not CPU time).
"""

from __future__ import annotations

import argparse
import json
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
from course_lib.utils import timing
from course_lib.evaluation.mots import write_mots


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
    """Images per second of ``scene()`` and of ``clip()`` frames, at the requested size."""
    scene(args.seed, args.height, args.width)  # warm-up: imports, first allocations
    start, start_cpu = time.perf_counter(), time.process_time()
    for seed in range(args.seed, args.seed + args.count):
        scene(seed, args.height, args.width)
    scene_time, scene_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    start = time.perf_counter()
    clip(args.seed, args.count, args.height, args.width)
    clip_time = time.perf_counter() - start
    return {
        "what": "course_lib.data.toycity generation speed, ground truth included",
        "size": [args.height, args.width],
        "count": args.count,
        "scene_images_per_s": args.count / scene_time,
        "scene_seconds_each": scene_time / args.count,
        # CPU time is what one core spends; wall time also counts waiting for a shared machine
        "scene_cpu_seconds_each": scene_cpu / args.count,
        "load_average_1min": timing.load_average_1min(),  # at the end, one number: the format Week 4 reads
        "clip_frames_per_s": args.count / clip_time,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "opencv": cv2.__version__,
        **timing.machine_record(torch.device("cpu"), command="python data_scripts/make_toycity.py " + " ".join(sys.argv[1:])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", choices=["coco", "cityscapes", "mots"], help="what to export")
    parser.add_argument("--bench", action="store_true", help="measure images/s instead of exporting")
    parser.add_argument("--out", help="output folder (export)")
    parser.add_argument("--json", help="also write the benchmark result to this JSON file")
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
        result = bench(args)
        print(f"ToyCity {args.height}x{args.width}: {result['scene_images_per_s']:.1f} scenes/s "
              f"({1000 * result['scene_seconds_each']:.1f} ms wall, {1000 * result['scene_cpu_seconds_each']:.1f} ms CPU "
              f"each), {result['clip_frames_per_s']:.1f} clip frames/s; load average {result['load_average_1min']:.1f}")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
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
