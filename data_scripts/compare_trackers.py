"""The course's tracker against the field: boxmot's ByteTrack, OC-SORT and BoT-SORT on the same detections.

    python data_scripts/compare_trackers.py --out course_lib/assets/results/tracker_comparison.json

Clips are ToyCity videos (a fixed camera over a street, exact track ids), ``--clips SEED:OCCLUSION``
each, at ``--height x --width`` and ``--fps``; the default set has four streets at ToyCity's default
occlusion and four where actors are packed so that most are partly hidden (occlusion 0.9: people
walking behind traffic). Every tracker gets the same detections of each clip, from two sources:

* ``model``: the shipped ToyCity Mask R-CNN (``zoo.load('toycity')``), every detection scoring at
  least ``--min-score`` (0.1: ByteTrack and BoT-SORT use the low-score ones; each tracker applies
  its own thresholds);
* ``perturbed ground truth``: the clip's ground truth with box jitter and ragged mask edges
  (:func:`course_lib.tracking.track_metrics.noisy_detections`), to separate the tracker's errors from the
  detector's. It is not a detector.

Scores are TrackEval's (MOTSChallenge: HOTA, DetA, AssA, IDF1, IDSW) combined over all clips and
classes, on the masks each tracker reports; time is ``update`` alone per frame, trackers taking
turns frame by frame; flicker is the mean change of a track's box-aligned mask between consecutive frames
(:func:`course_lib.tracking.track_metrics.compare_trackers`). The script prints the table and, with
``--out``, writes it as JSON with the machine, threads, versions, date and this command.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from importlib.metadata import version

import torch

from course_lib import environment, zoo
from course_lib.data.toycity import clip
from course_lib.utils import atomic, timing
from course_lib.errors import MachineBusy
from course_lib.tracking.track_metrics import compare_trackers, noisy_detections
from course_lib.tracking.annotate import predict_frames
from course_lib.tracking.trackers import AGAINST_THE_FIELD, TRACKERS

DEFAULT_CLIPS = ["0:0.5", "1:0.5", "2:0.5", "3:0.5", "4:0.9", "5:0.9", "6:0.9", "7:0.9"]
COLUMNS = ("HOTA", "DetA", "AssA", "IDF1", "IDSW", "ms_per_frame", "flicker")


def parse_clip(spec: str) -> tuple[int, float]:
    seed, sep, occlusion = spec.partition(":")
    try:
        return int(seed), float(occlusion) if sep else 0.5
    except ValueError:
        raise SystemExit(f"clip {spec!r}: write SEED:OCCLUSION, e.g. 5:0.9") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="+", default=DEFAULT_CLIPS, help="ToyCity clips as SEED:OCCLUSION")
    parser.add_argument("--frames", type=int, default=60, help="frames per clip")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--min-score", type=float, default=0.1, help="lowest model score passed to the trackers")
    parser.add_argument("--trackers", nargs="+", default=list(AGAINST_THE_FIELD), choices=TRACKERS,
                        help="trackers by name (course_lib.tracking.trackers.TRACKERS)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="write the table as JSON to this file")
    parser.add_argument("--force-loaded", action="store_true",
                        help="write --out even when the load average exceeds the core count (recorded in the file)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = timing.load_average_1min()

    clips = {f"seed{seed}_occlusion{occlusion}": clip(seed, args.frames, args.height, args.width, fps=args.fps,
                                                       occlusion=occlusion)
             for seed, occlusion in map(parse_clip, args.clips)}
    targets = {name: [target for _, target in frames] for name, frames in clips.items()}
    model = zoo.load("toycity")
    sources = {
        "model": {name: [d for _, d in predict_frames(model, [image for image, _ in frames], batch_size=4,
                                                       min_score=args.min_score)]
                  for name, frames in clips.items()},
        "perturbed ground truth": {name: noisy_detections(frames, seed=k) for k, (name, frames) in enumerate(targets.items())},
    }
    results = {}
    for source, detections in sources.items():
        with tempfile.TemporaryDirectory() as workdir:
            results[source] = compare_trackers(args.trackers, targets, detections, workdir, frame_rate=args.fps)
        environment.print_banner("ToyCity model (zoo.load('toycity'))" if source == "model" else "none (perturbed ground truth)",
                             f"{len(clips)} ToyCity clips of {args.frames} frames at {args.height}x{args.width}, {args.fps:g} fps")
        print(f"{'tracker':<14}" + "".join(f"{c:>14}" for c in COLUMNS))
        for name, row in results[source].items():
            print(f"{name:<14}" + "".join(f"{row[c]:>14.0f}" if c == "IDSW" else f"{row[c]:>14.3f}" for c in COLUMNS))

    if args.out:
        try:  # the trackers' ms/frame are timings: not written from a busy machine
            record = timing.machine_record(torch.device("cpu"), load_before, args.force_loaded,
                                           command="python data_scripts/compare_trackers.py "
                                           + " ".join(sys.argv[1:] if argv is None else argv))
        except MachineBusy as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        table = {
            "what": "ToyCity clips: the course's tracker and boxmot's on the same detections, TrackEval scores "
                    "combined over clips (data_scripts/compare_trackers.py)",
            **record,
            "versions": {package: version(package) for package in ("torch", "torchvision", "numpy", "boxmot", "trackeval")},
            "clips": args.clips, "frames": args.frames, "size": [args.height, args.width], "fps": args.fps,
            "model_min_score": args.min_score,
            "detections_per_frame": {source: sum(len(d["boxes"]) for frames in dets.values() for d in frames)
                                     / sum(len(frames) for frames in dets.values()) for source, dets in sources.items()},
            "results": results,
        }
        # the previous table stays whole until the new one is complete; an undefined flicker is null
        print(f"wrote {atomic.write_json(args.out, table)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
