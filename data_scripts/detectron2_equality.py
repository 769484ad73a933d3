"""Prove that course_lib's conversion of a Detectron2 model-zoo file equals Detectron2's own model.

Writes one random-weight model-zoo ``.pkl`` (exactly Detectron2's names and shapes), loads it into
Detectron2 (``DetectionCheckpointer``, the model built from ``configs/<entry>.yaml`` with
``MODEL.WEIGHTS=''`` on the CPU) and into course_lib (``detectron2_weights.load_file``), runs both on the
same images and compares boxes, scores, labels and masks. The result goes to
``course_lib/assets/results/detectron2_equality.json``.

Detectron2 is not a dependency of the course: this script imports it from ``PYTHONPATH`` (a source
checkout beside its pure-Python requirements; its Mask R-CNN inference needs no compiled code)::

    PYTHONPATH=.:$D2_SRC:$D2_DEPS python data_scripts/detectron2_equality.py --images a.jpg b.png

Images are resized (OpenCV, bilinear) so that their short side is the entry's test size: neither
model then resizes, and both see the same pixels (Detectron2 resizes in its data loader, not its
model, with PIL; torchvision inside its model, with ``F.interpolate``: a preprocessing difference
this script keeps out of the comparison on purpose).
"""

from __future__ import annotations

import argparse
import datetime
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

from course_lib.deploy import timing
from course_lib.structures.matching import match_pairs
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


def detectron2_model(config_root: Path, entry: detectron2_weights.Entry, weights: Path) -> torch.nn.Module:
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(config_root / f"{entry.name}.yaml"))
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = "cpu", ""
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(str(weights))  # logs, but does not fail on, missing or extra keys
    state = model.state_dict()
    shapes = {name: tuple(value.shape) for name, value in state.items()}
    if shapes != detectron2_weights.expected_shapes(entry.depth, len(entry.classes)):
        raise SystemExit(f"Detectron2's {entry.name} has other tensor names or shapes than detectron2_weights.expected_shapes")
    written = detectron2_weights.read_weights(weights, entry.depth, len(entry.classes))
    if not all(torch.equal(state[name], torch.from_numpy(array)) for name, array in written.items()):
        raise SystemExit(f"Detectron2 did not load every tensor of {weights}")
    return model


def test_size_image(path: Path, entry: detectron2_weights.Entry) -> np.ndarray:
    """BGR uint8 ``[H, W, 3]`` with short side ``entry.min_size`` (long side at most ``max_size``)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read image {path}: give the path of a JPEG or PNG")
    h, w = bgr.shape[:2]
    scale = min(entry.min_size / min(h, w), entry.max_size / max(h, w))
    size = (round(w * scale), round(h * scale))
    if min(size) != entry.min_size:
        raise SystemExit(f"{path}: aspect ratio too extreme for an exact {entry.min_size}-pixel short side")
    return cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", nargs="+", type=Path, required=True)
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
    torch.manual_seed(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        pkl = detectron2_weights.save_weights(
            detectron2_weights.random_weights(entry.depth, len(entry.classes), args.seed), Path(tmp) / "random.pkl"
        )
        d2 = detectron2_model(config_root, entry, pkl)
        ours = detectron2_weights.load_file(pkl, entry.name).eval()

    rows = []
    with torch.inference_mode():
        for path in args.images:
            bgr = test_size_image(path, entry)
            h, w = bgr.shape[:2]
            d2_out = d2([{"image": torch.from_numpy(bgr.transpose(2, 0, 1).copy()).float(), "height": h, "width": w}])
            rgb = torch.from_numpy(bgr[:, :, ::-1].transpose(2, 0, 1).copy()).float() / 255
            tv_out = ours([rgb])[0]
            rows.append({"image": path.name, "size_hw": [h, w], **compare(d2_out[0]["instances"], tv_out)})
            print(json.dumps(rows[-1]))

    result = {
        "entry": entry.name,
        "weights": f"random (detectron2_weights.random_weights, seed {args.seed}), one .pkl read by both",
        "state_dict": "Detectron2's names and shapes equal detectron2_weights.expected_shapes; every tensor loaded in both",
        "images": rows,
        "max_abs_box_diff_px": max(r["max_abs_box_diff_px"] for r in rows),
        "max_abs_score_diff": max(r["max_abs_score_diff"] for r in rows),
        "min_mask_iou": min(r["min_mask_iou"] for r in rows),
        "mask_pixel_disagreement": sum(r["mask_pixels_differing"] for r in rows) / sum(r["mask_pixels_detectron2"] for r in rows),
        "max_threshold_distance_of_differing_pixels": max(r["max_threshold_distance_of_differing_pixels"] for r in rows),
        "matched_fraction": sum(r["matched"] for r in rows) / sum(r["detections_detectron2"] for r in rows),
        "tolerance": TOLERANCE,
        "within_tolerance": None,
        "versions": {
            "detectron2": getattr(detectron2, "__version__", "unknown"),
            "detectron2_commit": source_commit(Path(detectron2.__file__).resolve().parents[1]),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
        },
        "device": timing.device_name(torch.device("cpu")),
        "threads": torch.get_num_threads(),
        "command": "python data_scripts/detectron2_equality.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    result["within_tolerance"] = within_tolerance(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(json.dumps(result, indent=2) + "\n")
    partial.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
