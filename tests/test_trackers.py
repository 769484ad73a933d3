"""course_lib.tracking.trackers: the registry of trackers, boxmot's behind the course's interface; the one
comparison (track_metrics.compare_trackers) and its script at tiny scale."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from course_lib import results
from course_lib.evaluation.mots import evaluate_mots
from course_lib.structures.masks import mask_iou
from course_lib.tracking.track_metrics import compare_trackers, mask_flicker, match_to_ground_truth, noisy_detections, run_tracker
from course_lib.tracking.track import Tracker, tracks_to_frame
from course_lib.tracking.trackers import (ABLATION, AGAINST_THE_FIELD, BOXMOT_TRACKERS, TRACKERS, BoxmotTracker,
                                          make_tracker)

H, W, FRAMES = 128, 256, 12


@pytest.fixture(scope="module")
def targets():
    from course_lib.data.toycity import clip

    return [target for _, target in clip(2, FRAMES, H, W, fps=25)]


@pytest.mark.parametrize("name", list(BOXMOT_TRACKERS))
def test_each_boxmot_tracker_gives_ids_that_follow_the_objects(name, targets):
    detections = noisy_detections(targets, seed=0)
    tracker = make_tracker(name, frame_rate=25)
    frames = [tracks_to_frame(tracker.update(d), H, W) for d in detections]
    reported = [frame for frame in frames[3:] if len(frame["track_ids"])]
    assert reported, f"{name} reported no track"
    for frame, d in zip(frames, detections):
        assert frame["masks"].shape[1:] == (H, W) and (frame["track_ids"] >= 1).all()
        if len(frame["masks"]):  # the reported masks are the detections' own
            assert mask_iou(frame["masks"], d["masks"]).max(1).values.min() > 0.6  # up to the 28 x 28 box-frame resampling
    # Objects seen in every frame from the fourth on keep one id each.
    ids: dict[int, set[int]] = {}
    for target, frame in zip(targets[3:], frames[3:]):
        for gt_id, pred_id in match_to_ground_truth(target, frame).items():
            ids.setdefault(gt_id, set()).add(pred_id)
    steady = [gt for gt, seen in ids.items() if all(gt in t["track_ids"].tolist() for t in targets[3:])]
    assert steady and all(len(ids[gt]) == 1 for gt in steady)


def test_the_adapter_drops_empty_boxes_and_maps_detection_indices():
    tracker = BoxmotTracker("ByteTrack", frame_rate=25)
    masks = torch.zeros(3, H, W, dtype=torch.uint8)
    masks[1, 20:60, 30:50] = 1
    boxes = torch.tensor([[10.0, 10.0, 10.0, 30.0], [30.0, 20.0, 50.0, 60.0], [80.0, 5.0, 79.0, 9.0]])
    frame = {"boxes": boxes, "labels": torch.tensor([1, 1, 1]), "scores": torch.tensor([0.9, 0.9, 0.9]), "masks": masks}
    for _ in range(3):
        tracks = tracker.update(frame)
    assert len(tracks) == 1 and tracks[0].box.tolist() == boxes[1].tolist()
    assert mask_iou(tracks_to_frame(tracks, H, W)["masks"], masks[1:2]).item() > 0.9


def test_unknown_tracker_name_says_which_exist():
    with pytest.raises(ValueError, match="ByteTrack"):
        BoxmotTracker("SORT")
    with pytest.raises(ValueError, match="course-kalman.*BoT-SORT"):
        make_tracker("full")  # the course tracker's old name in Week 3's table


def test_one_registry_names_every_tracker_the_course_compares():
    assert set(ABLATION) | set(AGAINST_THE_FIELD) == set(TRACKERS)
    assert set(BOXMOT_TRACKERS) == {"ByteTrack", "OC-SORT", "BoT-SORT"}
    for name in TRACKERS:
        tracker = make_tracker(name, frame_rate=25)
        assert isinstance(tracker, BoxmotTracker if name in BOXMOT_TRACKERS else Tracker)
        assert tracker.update({"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}) == []
    # The committed comparison is keyed by these names (the chapter and the README table read it).
    for rows in results.load_results("tracker_comparison.json")["results"].values():
        assert set(rows) <= set(TRACKERS)


def test_compare_scores_every_tracker_on_several_clips(targets, tmp_path):
    clips = {"a": targets[:8], "b": targets[4:]}
    detections = {name: noisy_detections(frames, seed=1) for name, frames in clips.items()}
    table = compare_trackers(list(TRACKERS), clips, detections, str(tmp_path), frame_rate=25)
    assert list(table) == list(TRACKERS)
    for name, row in table.items():
        assert 0 < row["HOTA"] <= 1 and 0 < row["AssA"] <= 1 and row["ms_per_frame"] > 0 and row["IDSW"] >= 0
        # "none" carries no id from one frame to the next: no track spans two frames to flicker
        assert (row["flicker"] != row["flicker"]) == (name == "none")
    # Pooled over clips: the flicker of all consecutive pairs lies between the clips' own.
    for name in ("iou", "course"):
        own = [mask_flicker(run_tracker(make_tracker(name), detections[c], H, W)) for c in clips]
        assert min(own) <= table[name]["flicker"] <= max(own)


def test_compare_scores_a_tracker_as_a_run_of_its_own_would(targets, tmp_path):
    """Taking turns frame by frame changes no tracker's output: the table equals TrackEval on a plain run."""
    detections = noisy_detections(targets, seed=3, hide={int(targets[0]["track_ids"][0]): range(4, 7)})
    table = compare_trackers(ABLATION, {"clip": targets}, {"clip": detections}, str(tmp_path / "compared"))
    alone = {name: run_tracker(make_tracker(name), detections, H, W) for name in ABLATION}
    scores = evaluate_mots(targets, alone, str(tmp_path / "alone"))
    for name in ABLATION:
        for metric in ("HOTA", "DetA", "AssA", "IDF1", "MOTA", "IDSW"):
            assert table[name][metric] == pytest.approx(scores[name]["all"][metric], abs=1e-12), (name, metric)
        assert table[name]["flicker"] == pytest.approx(mask_flicker(alone[name]), nan_ok=True)


def test_comparison_script_writes_its_table(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_scripts"))
    import compare_trackers

    out = tmp_path / "results" / "tracker_comparison.json"
    # --force-loaded: the test suite itself keeps the cores busy; the file then says it was forced
    compare_trackers.main(["--clips", "5:0.9", "--frames", "6", "--height", "128", "--width", "256", "--out", str(out),
                           "--force-loaded"])
    table = json.loads(out.read_text())
    assert {"device", "threads", "versions", "date", "command", "clips", "load_average_1min", "cores"} <= set(table)
    assert table["forced_under_load"] is True
    assert set(table["results"]) == {"model", "perturbed ground truth"}
    assert list(table["results"]["model"]) == list(AGAINST_THE_FIELD)
    assert table["results"]["model"]["course"]["flicker"] >= 0
    assert list(out.parent.iterdir()) == [out]  # written to a temporary name, then renamed


def test_comparison_script_writes_an_undefined_flicker_as_strict_json(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_scripts"))
    import compare_trackers

    out = tmp_path / "tracker_comparison.json"
    compare_trackers.main(["--clips", "5:0.9", "--frames", "3", "--height", "128", "--width", "256",
                           "--trackers", "none", "--out", str(out), "--force-loaded"])

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    table = json.loads(out.read_text(), parse_constant=refuse)
    assert {row["none"]["flicker"] for row in table["results"].values()} == {None}


def test_comparison_script_refuses_to_write_timings_from_a_busy_machine(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_scripts"))
    import compare_trackers

    monkeypatch.setattr(os, "getloadavg", lambda: (4.0 * (os.cpu_count() or 1), 0.0, 0.0))
    out = tmp_path / "tracker_comparison.json"
    out.write_text("earlier\n")
    rc = compare_trackers.main(["--clips", "5:0.9", "--frames", "4", "--height", "128", "--width", "256",
                                "--trackers", "course", "--out", str(out)])
    assert rc == 2 and out.read_text() == "earlier\n"
    assert "busy" in capsys.readouterr().err
