"""Prove that course_lib's conversion of a Detectron2 model-zoo file equals Detectron2's own model, on any image size.

Writes one random-weight model-zoo ``.pkl`` (exactly Detectron2's names and shapes), loads it into
Detectron2 (``DefaultPredictor``, the model built from ``configs/<entry>.yaml`` on the CPU) and into
course_lib (``zoo.load("detectron2:...")``'s ``detectron2_weights.load_file``), runs both on the same
images at their own sizes and compares boxes, scores, labels and masks:

* ``pil``: course_lib's default resize against Detectron2's ``DefaultPredictor`` (``ResizeShortestEdge``,
  PIL on the uint8 BGR image);
* ``interpolate``: course_lib's ``resize="interpolate"`` against Detectron2's model fed the float image
  resized by Detectron2's own ``ResizeTransform`` (its ``F.interpolate`` path);
* ``interpolate_vs_default_predictor``: what remains different when the float resize stands in for PIL's
  (no tolerance: a measurement).

It also checks ``detectron2_arch.output_size`` against ``ResizeShortestEdge.get_output_shape`` on a grid
of image sizes. The result goes to ``course_lib/assets/results/detectron2_equality.json``.

Detectron2 is not a dependency of the course: this script imports it from ``PYTHONPATH`` (a source
checkout beside its pure-Python requirements; its Mask R-CNN inference needs no compiled code)::

    PYTHONPATH=.:$D2_SRC:$D2_DEPS python data_scripts/detectron2_equality.py --images a.jpg b.png@333x500 clip.avi

``PATH@HxW`` first resizes the picture to ``H x W`` (OpenCV, area or linear): a photograph of that size;
a video gives its first frame.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision

from course_lib.cli import options
from course_lib.engine.settings import Bounds
from course_lib.utils import timing
from course_lib.errors import BadInput
from course_lib.modeling import detectron2_arch
from course_lib.structures.matching import match_pairs
from course_lib.utils.atomic import write_json
from course_lib.zoo import detectron2_weights

#: What "equal" means here (the committed test asserts the same): float32 arithmetic in a different
#: order (the input normalisation is folded differently) moves boxes by far less than a pixel.
#: A mask pixel may flip only where the soft mask is within float noise of the 0.5 threshold
#: (a per-mask IoU would punish a one-pixel flip in a 50-pixel mask).
TOLERANCE = {
    "max_abs_box_diff_px": 0.01,
    "max_abs_score_diff": 1e-4,
    "mask_pixel_disagreement": 2e-4,  # differing pixels / Detectron2's mask pixels
    "max_threshold_distance_of_differing_pixels": 1e-3,  # |soft mask - 0.5| where they differ
    "matched_fraction": 0.95,
}
OUT = Path(__file__).resolve().parents[1] / "course_lib" / "assets" / "results" / "detectron2_equality.json"
#: The pairs compared: (course_lib's resize option, Detectron2's pipeline, whether TOLERANCE applies).
COMPARISONS = {
    "pil": ("pil", "DefaultPredictor: ResizeShortestEdge, PIL on the uint8 BGR image", True),
    "interpolate": ("interpolate", "the model fed ResizeTransform's float resize (F.interpolate) of the image", True),
    "interpolate_vs_default_predictor": ("interpolate", "DefaultPredictor: ResizeShortestEdge, PIL on the uint8 BGR image", False),
}


def detectron2_predictor(config_root: Path, entry: detectron2_weights.Entry, weights: Path):
    """Detectron2's ``DefaultPredictor`` for ``entry`` with ``weights``, checked to hold every tensor of the file."""
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor

    cfg = get_cfg()
    cfg.merge_from_file(str(config_root / f"{entry.name}.yaml"))
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = "cpu", str(weights)
    predictor = DefaultPredictor(cfg)  # logs, but does not fail on, missing or extra keys: checked here
    state = predictor.model.state_dict()
    shapes = {name: tuple(value.shape) for name, value in state.items()}
    if shapes != detectron2_weights.expected_shapes(entry.depth, len(entry.classes)):
        raise SystemExit(f"Detectron2's {entry.name} has other tensor names or shapes than detectron2_weights.expected_shapes")
    written = detectron2_weights.read_weights(weights, entry.depth, len(entry.classes))
    if not all(torch.equal(state[name], torch.from_numpy(array)) for name, array in written.items()):
        raise SystemExit(f"Detectron2 did not load every tensor of {weights}")
    return predictor


def picture_spec(text: str) -> tuple[str, tuple[int, int] | None]:
    """An argparse ``type``: ``PATH`` or ``PATH@HxW`` -> (path, (H, W) or None); the size read by the CLI's one ``HxW`` type."""
    path, _, size = text.partition("@")
    return path, options.image_size(Bounds(low=1))(size) if size else None


def read_picture(path: str, size: tuple[int, int] | None) -> tuple[str, np.ndarray]:
    """A picture (resized to ``size`` = (H, W) if given) -> (its name, BGR uint8 ``[H, W, 3]``); a video gives its first frame."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        ok, bgr = cv2.VideoCapture(path).read()
        if not ok:
            raise SystemExit(f"cannot read {path}: give a JPEG, a PNG or a video")
    if size:
        h, w = size
        shrink = h * w < bgr.shape[0] * bgr.shape[1]
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return Path(path).name + (f"@{size[0]}x{size[1]}" if size else ""), bgr


def output_sizes_agree(test_sizes: list[tuple[int, int]], seed: int) -> dict:
    """``detectron2_arch.output_size`` vs ``ResizeShortestEdge.get_output_shape`` on a grid of sizes.

    Every size up to 300 x 300, 20,000 random ones up to 5000 x 5000, and the elongated ones where
    Detectron2's short side rounds to 0 (which course_lib refuses with ``BadInput``).
    """
    from detectron2.data.transforms import ResizeShortestEdge

    rng = np.random.default_rng(seed)
    grid = [(h, w) for h in range(1, 301) for w in range(1, 301)]
    grid += [tuple(int(v) for v in pair) for pair in rng.integers(1, 5001, (20_000, 2))]
    grid += [(1, w) for w in range(4000, 4200)] + [(h, 1) for h in range(4000, 4200)]
    checked = equal = refused = 0
    differing = []
    for short_edge, max_size in test_sizes:
        for h, w in grid:
            expected = ResizeShortestEdge.get_output_shape(h, w, short_edge, max_size)
            try:
                got = detectron2_arch.output_size(h, w, short_edge, max_size)
            except BadInput:
                got = None
                refused += min(expected) == 0
            checked += 1
            if got == expected or (got is None and min(expected) == 0):
                equal += 1
            else:
                differing.append([h, w, short_edge, max_size])
    return {"sizes_checked": checked, "equal": equal, "zero_sided_refused": refused, "differing": differing[:10],
            "test_sizes": test_sizes}


def source_commit(root: Path) -> str:
    """The git commit of a Detectron2 source checkout, or ``"unknown"``."""
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def within_tolerance(result: dict) -> bool:
    """True when every measured difference of ``result`` is inside :data:`TOLERANCE`."""
    return (
        result["max_abs_box_diff_px"] <= TOLERANCE["max_abs_box_diff_px"]
        and result["max_abs_score_diff"] <= TOLERANCE["max_abs_score_diff"]
        and result["mask_pixel_disagreement"] <= TOLERANCE["mask_pixel_disagreement"]
        and result["max_threshold_distance_of_differing_pixels"] <= TOLERANCE["max_threshold_distance_of_differing_pixels"]
        and result["matched_fraction"] >= TOLERANCE["matched_fraction"]
    )


def compare(d2_out, tv_out: dict, mask_threshold: float = 0.5) -> dict:
    """Differences between Detectron2's ``Instances`` and torchvision's output dict for one image.

    Detections are paired by :func:`course_lib.structures.matching.match_pairs` on box distance (same label only), not by
    rank: two scores within float noise of each other may swap ranks, and the 100-detection cap
    may then keep a different last detection. Pairs whose boxes differ by more than ``1 px`` on average count
    as unmatched.
    """
    d2_boxes, d2_scores = d2_out.pred_boxes.tensor, d2_out.scores
    d2_labels, d2_masks = d2_out.pred_classes + 1, d2_out.pred_masks  # torchvision: background is label 0
    tv_boxes, tv_scores, tv_labels = tv_out["boxes"], tv_out["scores"], tv_out["labels"]
    tv_soft = tv_out["masks"][:, 0]
    tv_masks = tv_soft >= mask_threshold  # Detectron2's threshold (the course's > 0.5 differs on a measure-zero set)
    cost = torch.cdist(d2_boxes, tv_boxes, p=1) + 1e6 * (d2_labels[:, None] != tv_labels[None, :])
    pairs = match_pairs(-cost, threshold=-4.0)  # four coordinates within 1 px each on average
    i, j = torch.tensor([p for p, _ in pairs], dtype=torch.long), torch.tensor([q for _, q in pairs], dtype=torch.long)
    inter = (d2_masks[i] & tv_masks[j]).flatten(1).sum(1).double()
    union = (d2_masks[i] | tv_masks[j]).flatten(1).sum(1).double()
    differing = d2_masks[i] ^ tv_masks[j]
    iou = torch.where(union > 0, inter / union.clamp(min=1), 1.0)  # two empty masks agree
    unmatched = sorted(set(range(len(d2_scores))) - set(i.tolist()))
    return {
        "detections_detectron2": len(d2_scores),
        "detections_course_lib": len(tv_scores),
        "matched": len(i),
        "unmatched_ranks_detectron2": unmatched,  # 0 = highest score
        "unmatched_scores_detectron2": [float(d2_scores[k]) for k in unmatched],
        "distinct_scores_detectron2": int(torch.unique(d2_scores).numel()),
        "score_range_detectron2": [float(d2_scores.min()), float(d2_scores.max())],
        "max_abs_box_diff_px": float((d2_boxes[i] - tv_boxes[j]).abs().max()),
        "max_abs_score_diff": float((d2_scores[i] - tv_scores[j]).abs().max()),
        "mask_pixels_detectron2": int(d2_masks[i].sum()),
        "mask_pixels_differing": int(differing.sum()),
        "max_threshold_distance_of_differing_pixels": float((tv_soft[j][differing] - mask_threshold).abs().max()) if differing.any() else 0.0,
        "min_mask_iou": float(iou.min()),
        "mean_mask_iou": float(iou.mean()),
    }


def run_both(predictor, ours: dict[str, torch.nn.Module], bgr: np.ndarray) -> dict:
    """Detectron2's two pipelines and course_lib's two resizes on one BGR uint8 image -> outputs by name."""
    from detectron2.data import transforms as T

    h, w = bgr.shape[:2]
    cfg = predictor.cfg
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST).get_transform(bgr)
    float_resized = resize.apply_image(bgr.astype(np.float32))  # ResizeTransform's F.interpolate path
    rgb = torch.from_numpy(bgr[:, :, ::-1].transpose(2, 0, 1).copy()).float() / 255
    return {
        "DefaultPredictor: ResizeShortestEdge, PIL on the uint8 BGR image": predictor(bgr)["instances"],
        "the model fed ResizeTransform's float resize (F.interpolate) of the image": predictor.model(
            [{"image": torch.from_numpy(float_resized.transpose(2, 0, 1).copy()), "height": h, "width": w}])[0]["instances"],
        **{mode: model([rgb])[0] for mode, model in ours.items()},
        "resized_hw": [resize.new_h, resize.new_w],
    }


def summary(rows: list[dict], with_tolerance: bool) -> dict:
    """The worst differences over ``rows`` and, with ``with_tolerance``, whether they are inside :data:`TOLERANCE`."""
    result = {
        "max_abs_box_diff_px": max(r["max_abs_box_diff_px"] for r in rows),
        "max_abs_score_diff": max(r["max_abs_score_diff"] for r in rows),
        "min_mask_iou": min(r["min_mask_iou"] for r in rows),
        "mask_pixel_disagreement": sum(r["mask_pixels_differing"] for r in rows) / max(1, sum(r["mask_pixels_detectron2"] for r in rows)),
        "max_threshold_distance_of_differing_pixels": max(r["max_threshold_distance_of_differing_pixels"] for r in rows),
        "matched_fraction": sum(r["matched"] for r in rows) / max(1, sum(r["detections_detectron2"] for r in rows)),
    }
    if with_tolerance:
        result["tolerance"] = TOLERANCE
        result["within_tolerance"] = within_tolerance(result)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", nargs="+", required=True, type=picture_spec, help="PATH or PATH@HxW (resized first); a video gives its first frame")
    parser.add_argument("--entry", default="Cityscapes/mask_rcnn_R_50_FPN", choices=sorted(detectron2_weights.ENTRIES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    try:
        import detectron2
    except ImportError:
        raise SystemExit("detectron2 is not importable: put a source checkout and its requirements on PYTHONPATH") from None
    config_root = Path(detectron2.__file__).resolve().parents[1] / "configs"
    entry = detectron2_weights.entry(args.entry)
    pictures = [read_picture(path, size) for path, size in args.images]
    torch.manual_seed(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        pkl = detectron2_weights.save_weights(
            detectron2_weights.random_weights(entry.depth, len(entry.classes), args.seed), Path(tmp) / "random.pkl"
        )
        predictor = detectron2_predictor(config_root, entry, pkl)
        ours = {mode: detectron2_weights.load_file(pkl, entry.name, resize=mode).eval() for mode in detectron2_arch.RESIZE_MODES}

    rows: dict[str, list[dict]] = {name: [] for name in COMPARISONS}
    with torch.inference_mode():
        for name, bgr in pictures:
            outputs = run_both(predictor, ours, bgr)
            for comparison, (mode, against, _) in COMPARISONS.items():
                rows[comparison].append({"image": name, "size_hw": list(bgr.shape[:2]), "resized_hw": outputs["resized_hw"],
                                         **compare(outputs[against], outputs[mode])})
                print(comparison, json.dumps(rows[comparison][-1]))

    result = {
        "entry": entry.name,
        "weights": f"random (course_lib.zoo.detectron2_weights.random_weights, seed {args.seed}), one .pkl read by both",
        "state_dict": "Detectron2's names and shapes equal course_lib.zoo.detectron2_weights.expected_shapes; every tensor loaded in both",
        "output_size": output_sizes_agree(sorted({(e.min_size, e.max_size) for e in detectron2_weights.ENTRIES.values()}), args.seed),
        "comparisons": {
            comparison: {"course_lib": f"zoo.load('detectron2:...', resize={mode!r})", "detectron2": against,
                         **summary(rows[comparison], with_tolerance), "images": rows[comparison]}
            for comparison, (mode, against, with_tolerance) in COMPARISONS.items()
        },
        **timing.machine_record(torch.device("cpu"), command="python data_scripts/detectron2_equality.py "
                                + " ".join(sys.argv[1:] if argv is None else argv)),
        "versions": {  # the record's, for what this comparison depends on
            "detectron2": getattr(detectron2, "__version__", "unknown"),
            "detectron2_commit": source_commit(Path(detectron2.__file__).resolve().parents[1]),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "pillow": __import__("PIL").__version__,
            "python": platform.python_version(),
        },
    }
    result["within_tolerance"] = all(c["within_tolerance"] for c in result["comparisons"].values() if "within_tolerance" in c) \
        and result["output_size"]["equal"] == result["output_size"]["sizes_checked"]
    write_json(args.out, result, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
