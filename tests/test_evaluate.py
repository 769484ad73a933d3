"""course_lib.evaluation.coco_eval on hand-made cases whose expected values are derived independently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from course_lib.classes import CLASS_TO_INDEX
from course_lib.evaluation.inference import inference_on_dataset
from course_lib.evaluation.coco_eval import coco_metrics, format_metrics
from course_lib.evaluation.failures import draw_errors, failure_analysis
from course_lib.evaluation.matched_masks import maskness, mean_matched_mask_iou
from course_lib.structures.matching import match_pairs
from course_lib.zoo import registry

H, W = 64, 96
CAR, PERSON, BUS, TRUCK = (CLASS_TO_INDEX[name] for name in ("car", "person", "bus", "truck"))
# COCO's ten IoU thresholds 0.50, 0.55, ..., 0.95, written out rather than taken from pycocotools.
THRESHOLDS = [0.5 + 0.05 * i for i in range(10)]


def rect_mask(x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
    """[H, W] uint8 mask of the pixels x0 <= x < x1, y0 <= y < y1."""
    mask = torch.zeros(H, W, dtype=torch.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def target(rects: list[tuple[int, int, int, int]], labels: list[int], iscrowd: list[int] | None = None) -> dict:
    masks = torch.stack([rect_mask(*r) for r in rects]) if rects else torch.zeros(0, H, W, dtype=torch.uint8)
    return {
        "boxes": tv_tensors.BoundingBoxes(torch.tensor(rects, dtype=torch.float32).reshape(-1, 4),
                                          format="XYXY", canvas_size=(H, W)),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": tv_tensors.Mask(masks),
        "iscrowd": torch.tensor(iscrowd or [0] * len(rects), dtype=torch.int64),
    }


def prediction(rects: list[tuple[int, int, int, int]], labels: list[int], scores: list[float]) -> dict:
    """Soft masks as the model returns them: [P, 1, H, W] probabilities (0.9 inside, 0.2 outside)."""
    soft = torch.stack([rect_mask(*r).float() * 0.7 + 0.2 for r in rects])[:, None] if rects \
        else torch.zeros(0, 1, H, W)
    return {"boxes": torch.tensor(rects, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels),
            "scores": torch.tensor(scores), "masks": soft}


def rect_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return ix * iy / (area(a) + area(b) - ix * iy)


def ap_101(is_true_positive_by_score: list[bool], n_gt: int) -> float:
    """COCO's 101-point interpolated AP of detections sorted by descending score."""
    tp = np.cumsum(is_true_positive_by_score)
    precision = tp / np.arange(1, len(tp) + 1)
    recall = tp / n_gt
    interpolated = [max((p for p, r in zip(precision, recall) if r >= level), default=0.0)
                    for level in np.linspace(0, 1, 101)]
    return float(np.mean(interpolated))


def test_perfect_predictions_give_ap_one():
    targets = [target([(4, 4, 40, 30), (50, 10, 90, 60)], [CAR, PERSON]), target([(0, 0, 20, 20)], [CAR])]
    predictions = [prediction([(4, 4, 40, 30), (50, 10, 90, 60)], [CAR, PERSON], [0.9, 0.8]),
                   prediction([(0, 0, 20, 20)], [CAR], [0.7])]
    metrics = coco_metrics(predictions, targets)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == pytest.approx(1.0)
        assert metrics[iou_type]["AR100"] == pytest.approx(1.0)
        assert metrics[iou_type]["per_class"]["car"]["n_gt"] == 2
        assert np.isnan(metrics[iou_type]["per_class"]["bus"]["AP"])  # no bus in the ground truth


def test_known_iou_gives_ap50_one_ap75_zero_and_ap_by_threshold_count():
    gt_rect, shifted = (10, 10, 30, 30), (16, 10, 36, 30)  # IoU 280/520, between 0.5 and 0.55
    iou = rect_iou(gt_rect, shifted)
    assert 0.5 < iou < 0.55
    metrics = coco_metrics([prediction([shifted], [CAR], [0.9])], [target([gt_rect], [CAR])])
    expected_ap = sum(iou >= t for t in THRESHOLDS) / len(THRESHOLDS)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP50"] == pytest.approx(1.0)
        assert metrics[iou_type]["AP75"] == pytest.approx(0.0)
        assert metrics[iou_type]["AP"] == pytest.approx(expected_ap)


def test_higher_scored_false_positive_halves_precision():
    gt_rect = (10, 10, 30, 30)
    predictions = [prediction([(60, 30, 80, 50), gt_rect], [CAR, CAR], [0.9, 0.5])]
    metrics = coco_metrics(predictions, [target([gt_rect], [CAR])])
    assert metrics["segm"]["AP50"] == pytest.approx(ap_101([False, True], n_gt=1))


def test_per_class_table_and_mean_over_classes():
    targets = [target([(4, 4, 40, 30), (50, 10, 90, 60)], [CAR, PERSON])]
    predictions = [prediction([(4, 4, 40, 30)], [CAR], [0.9])]  # the person is missed
    segm = coco_metrics(predictions, targets, iou_types=("segm",))["segm"]
    assert segm["per_class"]["car"]["AP"] == pytest.approx(1.0)
    assert segm["per_class"]["person"]["AP"] == pytest.approx(0.0)
    assert segm["AP"] == pytest.approx(0.5)  # COCO AP averages the classes that have ground truth
    assert set(segm["per_class"]) == {"person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"}


def test_detection_on_a_crowd_region_is_ignored_not_false():
    crowd = (50, 10, 90, 60)
    targets = [target([(4, 4, 40, 30), crowd], [CAR, CAR], iscrowd=[0, 1])]
    predictions = [prediction([(55, 15, 85, 55), (4, 4, 40, 30)], [CAR, CAR], [0.9, 0.5])]
    segm = coco_metrics(predictions, targets, iou_types=("segm",))["segm"]
    assert segm["AP"] == pytest.approx(1.0)
    assert segm["per_class"]["car"]["n_gt"] == 1


def test_empty_predictions_give_zero_and_misaligned_lists_fail():
    targets = [target([(4, 4, 40, 30)], [CAR])]
    assert coco_metrics([prediction([], [], [])], targets)["bbox"]["AP"] == 0.0
    with pytest.raises(ValueError, match="aligned"):
        coco_metrics([], targets)


def test_format_metrics_lists_every_class():
    metrics = coco_metrics([prediction([(4, 4, 40, 30)], [CAR], [0.9])], [target([(4, 4, 40, 30)], [CAR])])
    text = format_metrics(metrics)
    assert "segm" in text and all(name in text for name in ("person", "bicycle"))


def test_match_pairs_is_globally_optimal_not_greedy():
    # Greedy would pair prediction 0 with target 0 (0.9) and leave prediction 1 unmatched (0.0 < 0.5).
    ious = np.array([[0.9, 0.8], [0.6, 0.0]])
    assert sorted(match_pairs(ious, 0.5)) == [(0, 1), (1, 0)]
    assert match_pairs(np.zeros((0, 3)), 0.5) == []
    # The gate drops a pair of the optimum rather than re-pairing: row 1's only partner is under it.
    assert match_pairs(torch.tensor([[0.9, 0.0], [0.0, 0.3]]), 0.5) == [(0, 0)]
    assert match_pairs(torch.tensor([[0.9, 0.0], [0.0, 0.3]])) == [(0, 0), (1, 1)]  # no gate: all min(R, C) pairs


def test_mean_matched_mask_iou_averages_same_class_pairs_only():
    gt_a, gt_b, shifted = (10, 10, 30, 30), (50, 20, 80, 50), (16, 10, 36, 30)
    targets = [target([gt_a, gt_b], [CAR, PERSON])]
    predictions = [prediction([shifted, gt_b, gt_b], [CAR, PERSON, CAR], [0.9, 0.8, 0.95])]
    expected = (rect_iou(gt_a, shifted) + 1.0) / 2  # the car on the person is not a pair
    assert mean_matched_mask_iou(predictions, targets) == pytest.approx(expected)
    assert np.isnan(mean_matched_mask_iou(predictions, targets, score_threshold=0.99))


def failure_case() -> tuple[list[dict], list[dict]]:
    """A found car, a bus called truck, a missed person, a detection on a crowd region, a false car."""
    car, person, bus, crowd = (4, 4, 40, 30), (50, 10, 60, 40), (0, 40, 96, 64), (62, 0, 96, 20)
    t = target([car, person, bus, crowd], [CAR, PERSON, BUS, CAR], iscrowd=[0, 0, 0, 1])
    t["occlusion"] = torch.tensor([0.0, 0.6, 0.2, 0.0])
    p = prediction([car, bus, (64, 2, 94, 18), (42, 30, 48, 38), person],
                   [CAR, TRUCK, CAR, CAR, PERSON], [0.9, 0.8, 0.7, 0.6, 0.1])
    return [p], [t]


def test_failure_analysis_counts_a_hand_made_case():
    predictions, targets = failure_case()
    report = failure_analysis(predictions, targets)
    errors = report.images[0]
    assert errors.found == [(0, 0)] and errors.confused == [(1, 2)]
    assert errors.missed == [1]  # the person: its only detection scores 0.1 < 0.5
    assert errors.false == [3]  # detection 2 lies on the crowd region: ignored
    per_class = report.per_class()
    assert per_class["car"] == {"objects": 1, "found": 1, "confused": 0, "missed": 0, "detections": 2, "false": 1}
    assert per_class["bus"]["confused"] == 1 and per_class["truck"]["detections"] == 1
    assert per_class["person"]["missed"] == 1
    assert report.confusion[BUS, TRUCK] == 1 and report.confusion.sum() == 4
    # areas: car 936, person 300 (small, < 32^2); bus 2304 (medium)
    assert report.by_size["small"] == {"objects": 2, "missed": 1}
    assert report.by_size["medium"] == {"objects": 1, "missed": 0}
    assert report.by_occlusion["mostly (>=50%)"] == {"objects": 1, "missed": 1}
    assert report.by_occlusion["partly (10-50%)"] == {"objects": 1, "missed": 0}
    assert report.worst_images(1)[0].n_errors == 3
    assert "miss rate" in report.table()


def test_draw_errors_paints_each_kind():
    predictions, targets = failure_case()
    errors = failure_analysis(predictions, targets).images[0]
    canvas = draw_errors(torch.zeros(3, H, W), predictions[0], targets[0], errors)
    assert canvas.dtype == torch.uint8 and canvas.shape == (3, H, W)
    assert canvas[1, 20, 20] > 0 and canvas[0, 25, 55] > 0  # green found car, red missed person
    enlarged = draw_errors(torch.zeros(3, H, W), predictions[0], targets[0], errors, scale=3)
    assert enlarged.shape == (3, 3 * H, 3 * W) and enlarged[0, 3 * 25, 3 * 55] > 0


def test_official_cityscapes_evaluator_on_a_cityscapes_layout_fixture(tmp_path):
    from test_data import CAR as CS_CAR
    from test_data import fixture_ids, write_cityscapes_frame

    from course_lib.data.cityscapes import CityscapesInstances
    from course_lib.evaluation.cityscapes_eval import cityscapes_official_eval, format_official

    write_cityscapes_frame(tmp_path, "val", "frankfurt", "000000_000294", fixture_ids())
    write_cityscapes_frame(tmp_path, "val", "lindau", "000001_000019", np.full(fixture_ids().shape, 7))
    dataset = CityscapesInstances(tmp_path, "val")
    (_, first), (_, second) = dataset[0], dataset[1]
    group = torch.from_numpy(fixture_ids() == CS_CAR)[None, None].float()

    def as_prediction(t: dict, extra_masks: torch.Tensor | None = None) -> dict:
        masks = t["masks"][:, None].float()
        labels, scores = t["labels"], torch.ones(len(t["labels"])) * 0.5
        if extra_masks is not None:  # a confident car prediction covering the car *group*
            masks, labels, scores = torch.cat([masks, extra_masks]), torch.cat([labels, torch.tensor([CAR])]), \
                torch.cat([scores, torch.tensor([0.99])])
        return {"masks": masks, "labels": labels, "scores": scores, "boxes": t["boxes"]}

    result = cityscapes_official_eval([as_prediction(first, group), as_prediction(second)], tmp_path, "val",
                                      tmp_path / "results")
    assert result["per_class"]["car"]["AP"] == pytest.approx(1.0)  # the group prediction is ignored
    assert result["per_class"]["person"]["AP"] == pytest.approx(1.0)
    assert np.isnan(result["per_class"]["bus"]["AP"])
    assert result["AP"] == pytest.approx(1.0)
    assert (tmp_path / "results" / "frankfurt_000000_000294_pred.txt").read_text().count("\n") == 4
    assert "person" in format_official(result)
    with pytest.raises(ValueError, match="1 predictions for the 2 images"):
        cityscapes_official_eval([as_prediction(first)], tmp_path, "val", tmp_path / "results")


def test_eval_cli_on_toycity_with_a_checkpoint(tmp_path, capsys):
    import json

    from course_lib.cli.evaluate import cli
    from course_lib.modeling.maskrcnn import build

    torch.manual_seed(0)
    checkpoint = tmp_path / "model.pt"
    torch.save({"model": build("toycity_small").state_dict()}, checkpoint)
    out = tmp_path / "metrics.json"
    assert cli(["--data", "toycity", "--model", str(checkpoint), "--length", "2", "--height", "64", "--width", "128",
                "--batch-size", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[results from] model:" in printed and "miss rate" in printed
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"bbox", "segm", "mask_iou", "settings"} and "car" in metrics["segm"]["per_class"]
    assert metrics["settings"] == {"batch_size": 1}  # the settings it ran with, recorded beside the metrics
    with pytest.raises(registry.WeightsUnavailable, match="expected 'toycity', 'coco', 'detectron2:<model-zoo name>' or the path"):
        cli(["--data", "toycity", "--model", str(tmp_path / "missing.pt"), "--length", "1"])


def test_official_evaluator_and_coco_metrics_on_an_exported_toycity_split(tmp_path):
    from course_lib.data.cityscapes import CityscapesInstances
    from course_lib.data.toycity import scene
    from course_lib.data.toycity.export import write_cityscapes
    from course_lib.evaluation.cityscapes_eval import cityscapes_official_eval

    group_area = 80  # ToyCity objects under 80 pixels (three in scene 8) become <class>group regions
    write_cityscapes(tmp_path, "val", [scene(seed, 128, 256, semantic=True) for seed in (7, 8)], group_area=group_area)
    dataset = CityscapesInstances(tmp_path, "val", crowd=True)
    targets = [dataset[i][1] for i in range(len(dataset))]
    assert sum(int(t["iscrowd"].sum()) for t in targets) > 0, "pick seeds with at least one group region"
    perfect = [{"boxes": t["boxes"][t["iscrowd"] == 0], "labels": t["labels"][t["iscrowd"] == 0],
                "scores": torch.linspace(0.9, 0.5, int((t["iscrowd"] == 0).sum())),
                "masks": t["masks"][t["iscrowd"] == 0][:, None].float()} for t in targets]
    assert coco_metrics(perfect, targets)["segm"]["AP"] == pytest.approx(1.0)
    official = cityscapes_official_eval(perfect, tmp_path, "val", tmp_path / "results")
    assert official["AP"] == pytest.approx(1.0)


class OracleModel(torch.nn.Module):
    """Returns the ground truth of each image it is shown (looked up by its first pixel) as soft masks."""

    def __init__(self, samples: list[tuple[torch.Tensor, dict]]) -> None:
        super().__init__()
        self.by_key = {float(image[0, 0, 0]): target for image, target in samples}

    def forward(self, images: list[torch.Tensor]) -> list[dict]:
        outputs = []
        for image in images:
            t = self.by_key[float(image[0, 0, 0])]
            outputs.append({"boxes": t["boxes"].as_subclass(torch.Tensor), "labels": t["labels"],
                            "scores": torch.ones(len(t["labels"])), "masks": t["masks"][:, None].float() * 0.8})
        return outputs


def test_evaluate_model_batches_binarises_and_scores_an_oracle():
    from course_lib.evaluation.inference import evaluate_model

    samples = [(torch.full((3, H, W), i / 10), target([(4, 4, 40, 30), (50, 10, 90, 60)][: i + 1], [CAR, PERSON][: i + 1]))
               for i in range(2)] + [(torch.full((3, H, W), 0.5), target([(0, 0, 20, 20)], [BUS]))]
    metrics, predictions = evaluate_model(OracleModel(samples), samples, device="cpu", batch_size=2)
    assert metrics["segm"]["AP"] == pytest.approx(1.0) and metrics["mask_iou"] == pytest.approx(1.0)
    assert len(predictions) == 3 and predictions[2]["masks"].dtype == torch.uint8
    assert predictions[2]["masks"].shape == (1, 1, H, W) and int(predictions[2]["masks"].sum()) == 400


def test_maskness_is_the_mean_probability_inside_each_binarised_mask():
    masks = torch.zeros(3, 1, 4, 4)
    masks[0, 0, :2, :2] = 0.9  # sharp
    masks[1, 0, :2, :2], masks[1, 0, 2:, 2:] = 0.6, 0.4  # blurred: only the 0.6 pixels are mask
    assert maskness(masks).tolist() == pytest.approx([0.9, 0.6, 0.0])


class _FixedOutputModel(torch.nn.Module):
    """Returns the same two soft-mask detections for every image."""

    def forward(self, images):
        masks = torch.zeros(2, 1, H, W)
        masks[0, 0, :4, :4], masks[1, 0, 4:8, 4:8] = 0.55, 1.0
        return [{"boxes": torch.tensor([[0.0, 0, 4, 4], [4, 4, 8, 8]]), "labels": torch.tensor([CAR, CAR]),
                 "scores": torch.tensor([0.9, 0.8]), "masks": masks.clone()} for _ in images]


def test_predict_keeps_maskness_to_rank_detections_by_score_times_maskness():
    dataset = [(torch.zeros(3, H, W), target([(0, 0, 4, 4)], [CAR]))]
    predictions, _ = inference_on_dataset(_FixedOutputModel(), dataset, device="cpu")
    assert predictions[0]["scores"].tolist() == pytest.approx([0.9, 0.8])
    assert predictions[0]["maskness"].tolist() == pytest.approx([0.55, 1.0])
    rescored = predictions[0]["scores"] * predictions[0]["maskness"]
    assert rescored.tolist() == pytest.approx([0.9 * 0.55, 0.8])  # the sharp mask now ranks first


def test_evaluate_cityscapes_scores_a_model_on_the_cityscapes_folder(cityscapes_standin, tmp_path, monkeypatch):
    from course_lib.data.cityscapes import CityscapesInstances
    from course_lib.errors import MissingData
    from course_lib.evaluation.cityscapes_eval import evaluate_cityscapes

    dataset = CityscapesInstances(cityscapes_standin, "val")
    samples = [dataset[i] for i in range(len(dataset))]
    assert len({float(image[0, 0, 0]) for image, _ in samples}) == len(samples), "the oracle tells images apart by a pixel"
    monkeypatch.setenv("CITYSCAPES_DATASET", str(cityscapes_standin))
    result = evaluate_cityscapes(OracleModel(samples), tmp_path / "official", device="cpu")
    assert result["AP"] == pytest.approx(1.0) and Path(result["result_file"]).parent == tmp_path / "official"
    # a model that finds nothing scores 0, on a root given explicitly
    empty = OracleModel([(image, {**t, **{key: t[key][:0] for key in ("boxes", "labels", "masks")}}) for image, t in samples])
    monkeypatch.delenv("CITYSCAPES_DATASET")
    assert evaluate_cityscapes(empty, tmp_path / "none", root=cityscapes_standin, device="cpu")["AP"] == 0.0
    with pytest.raises(MissingData, match="set CITYSCAPES_DATASET"):
        evaluate_cityscapes(empty, tmp_path / "unset")
