"""course_lib.tracking.track: mask geometry, the assignment step, the track state machine, and ids on ToyCity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from course_lib.structures.masks import mask_iou
from course_lib.tracking.mask_rois import iou_cost_matrix, masks_to_rois, paste_rois, roi_mask_iou
from course_lib.tracking.track import FORBIDDEN, Tracker, TrackState, assign, track_color, tracks_to_frame

H, W = 96, 160


def ellipses(boxes: list[list[float]]) -> torch.Tensor:
    """Filled ellipses inscribed in ``boxes``: uint8 [N, H, W]."""
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    masks = []
    for x0, y0, x1, y1 in boxes:
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        masks.append((((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1).to(torch.uint8))
    return torch.stack(masks)


def detections(boxes: list[list[float]], labels: list[int] | None = None) -> dict:
    """Ellipse detections in ``boxes`` (label 3, car, unless given)."""
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "labels": torch.tensor(labels or [3] * len(boxes)),
        "scores": torch.ones(len(boxes)),
        "masks": ellipses(boxes),
    }


NO_DETECTIONS = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, H, W)}


# ------------------------------------------------------------------ geometry


def test_rois_round_trip_keeps_the_mask():
    boxes = [[10, 10, 40, 50], [60, 20, 150, 60], [100, 70, 124, 90]]
    masks = ellipses(boxes)
    rois = masks_to_rois(masks, torch.tensor(boxes, dtype=torch.float32), 28)
    assert rois.shape == (3, 28, 28)
    pasted = paste_rois(rois, torch.tensor(boxes, dtype=torch.float32), H, W)
    assert pasted.dtype == torch.uint8 and pasted.shape == (3, H, W)
    assert mask_iou(pasted, masks).diag().min() > 0.9


def test_paste_clips_boxes_that_leave_the_image():
    boxes = torch.tensor([[-20.0, -10.0, 30.0, 40.0], [W + 5.0, 0.0, W + 30.0, 10.0]])
    pasted = paste_rois(torch.ones(2, 28, 28), boxes, H, W)
    assert pasted[0].sum() == 30 * 40  # only the part inside the image
    assert pasted[1].sum() == 0


def test_roi_mask_iou_approximates_full_resolution_iou():
    boxes_a = [[10, 10, 50, 60], [70, 20, 130, 70], [20, 60, 60, 90]]
    boxes_b = [[14, 12, 52, 58], [80, 25, 140, 75], [100, 5, 150, 30]]
    ta, tb = torch.tensor(boxes_a, dtype=torch.float32), torch.tensor(boxes_b, dtype=torch.float32)
    ma, mb = ellipses(boxes_a), ellipses(boxes_b)
    approx = roi_mask_iou(ta, masks_to_rois(ma, ta, 28), tb, masks_to_rois(mb, tb, 28))
    exact = mask_iou(ma, mb)
    assert exact[0, 0] > 0.6 and exact[0, 2] == 0  # the test covers overlapping and disjoint pairs
    assert (approx - exact).abs().max() < 0.06


# ------------------------------------------------------------------ matching


def test_cost_matrix_forbids_other_classes_and_low_iou():
    track_boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    det_boxes = torch.tensor([[0.0, 0, 10, 10], [21, 21, 31, 31], [0, 0, 10, 40]])
    cost, iou = iou_cost_matrix(track_boxes, torch.tensor([3, 1]), det_boxes, torch.tensor([1, 1, 3]), iou_gate=0.3)
    assert cost[0, 0] == FORBIDDEN  # same box, other class
    assert cost[0, 2] == FORBIDDEN  # same class, IoU 0.25 < gate
    assert cost[1, 1] == pytest.approx(1 - iou[1, 1].item()) and iou[1, 1] > 0.6


def test_assign_finds_the_global_optimum_and_drops_forbidden_pairs():
    # Greedy on the smallest cost would take (0, 0) and leave track 1 with a forbidden pair;
    # the optimum gives detection 0 to track 1 and detection 1 to track 0.
    cost = torch.tensor([[0.1, 0.2, FORBIDDEN], [0.15, FORBIDDEN, FORBIDDEN], [FORBIDDEN, FORBIDDEN, FORBIDDEN]])
    matches, unmatched_tracks, unmatched_dets = assign(cost)
    assert sorted(matches) == [(0, 1), (1, 0)]
    assert unmatched_tracks == [2] and unmatched_dets == [2]


def test_assign_on_empty_matrices():
    assert assign(torch.zeros(0, 3)) == ([], [], [0, 1, 2])
    assert assign(torch.zeros(2, 0)) == ([], [0, 1], [])


# ------------------------------------------------------------------ state machine


def states(tracker: Tracker) -> dict[int, TrackState]:
    return {t.track_id: t.state for t in tracker.tracks}


def test_tentative_then_confirmed_after_min_hits():
    tracker = Tracker(min_hits=3)
    box = [[20, 20, 60, 60]]
    first = tracker.update(detections(box))
    assert [t.state for t in first] == [TrackState.TENTATIVE]  # reported while the stream warms up
    tracker.update(detections(box))
    out = tracker.update(detections(box))
    assert [(t.track_id, t.state) for t in out] == [(1, TrackState.CONFIRMED)]


def test_a_tentative_track_that_misses_is_dropped_and_not_reported():
    tracker = Tracker(min_hits=2)
    for _ in range(3):
        tracker.update(detections([[20, 20, 60, 60]]))
    out = tracker.update(detections([[20, 20, 60, 60], [100, 10, 140, 50]]))  # a new object appears
    assert [t.track_id for t in out] == [1]  # the newcomer is tentative: not reported yet
    tracker.update(detections([[20, 20, 60, 60]]))  # and vanishes
    assert states(tracker) == {1: TrackState.CONFIRMED}


def test_lost_track_is_reidentified_within_max_age_then_removed():
    tracker = Tracker(min_hits=2, max_age=3, motion="none")
    box = [[20, 20, 60, 60]]
    for _ in range(3):
        tracker.update(detections(box))
    for _ in range(3):
        assert tracker.update(NO_DETECTIONS) == []
        assert states(tracker) == {1: TrackState.LOST}
    out = tracker.update(detections(box))
    assert [(t.track_id, t.state) for t in out] == [(1, TrackState.CONFIRMED)]
    for _ in range(4):
        tracker.update(NO_DETECTIONS)
    assert states(tracker) == {}  # max_age exceeded: removed
    tracker.update(detections(box))
    assert [t.track_id for t in tracker.tracks] == [2]
    assert [s for _, s in tracker_history_of(tracker, 2)] == [TrackState.TENTATIVE]


def tracker_history_of(tracker: Tracker, track_id: int):
    return next(t.history for t in tracker.tracks if t.track_id == track_id)


def test_constant_velocity_carries_a_lost_track_to_where_it_reappears():
    def run(motion: str) -> list[int]:
        tracker = Tracker(min_hits=2, max_age=5, motion=motion, iou_gate=0.3)
        ids = []
        for frame in range(10):
            x = 10 + 8 * frame  # 8 px per frame; detections missing in frames 4-6
            if frame in (4, 5, 6):
                tracker.update(NO_DETECTIONS)
                continue
            ids += [t.track_id for t in tracker.update(detections([[x, 30, x + 24, 60]]))]
        return ids

    assert set(run(motion="alpha-beta")) == set(run(motion="kalman")) == {1}
    assert len(set(run(motion="none"))) == 2  # waiting where it was last seen, the track misses it


def test_classes_never_share_a_track():
    tracker = Tracker(min_hits=1)
    tracker.update(detections([[20, 20, 60, 60]], labels=[3]))
    out = tracker.update(detections([[20, 20, 60, 60]], labels=[1]))
    assert [t.track_id for t in out] == [2]


def test_smoothing_moves_confirmed_tracks_part_way_and_alpha_one_follows_detections():
    boxes = [[[20, 20, 60, 60]], [[20, 20, 60, 60]], [[30, 20, 70, 60]]]
    smooth, follow = Tracker(min_hits=1, box_alpha=0.5, motion="none"), Tracker(min_hits=1, box_alpha=1.0, mask_alpha=1.0)
    for b in boxes:
        out_smooth, out_follow = smooth.update(detections(b)), follow.update(detections(b))
    assert out_smooth[0].box[0] == pytest.approx(25.0)
    assert out_follow[0].box[0] == pytest.approx(30.0)
    assert torch.equal(out_follow[0].roi, masks_to_rois(ellipses(boxes[-1]), torch.tensor(boxes[-1], dtype=torch.float32), 28)[0])


def test_no_tracking_and_iou_only_presets_behave_as_documented():
    box = [[20, 20, 60, 60]]
    fresh = Tracker(iou_gate=1.01, box_gate=1.01, min_hits=1)
    assert [fresh.update(detections(box))[0].track_id for _ in range(3)] == [1, 2, 3]
    iou_only = Tracker(box_gate=1.01, min_hits=1, max_age=0, mask_alpha=1, box_alpha=1, motion="none")
    iou_only.update(detections(box))
    iou_only.update(NO_DETECTIONS)
    assert iou_only.update(detections(box))[0].track_id == 2  # no memory across a gap


def test_tracks_to_frame_and_colours():
    tracker = Tracker(min_hits=1)
    frame = tracks_to_frame(tracker.update(detections([[20, 20, 60, 60], [80, 10, 120, 70]])), H, W)
    assert frame["track_ids"].tolist() == [1, 2] and frame["masks"].shape == (2, H, W)
    assert frame["boxes"].dtype == torch.float32 and frame["labels"].dtype == torch.int64
    assert tracks_to_frame([], H, W)["masks"].shape == (0, H, W)
    colours = [track_color(i) for i in range(1, 21)]
    assert colours == [track_color(i) for i in range(1, 21)] and len(set(colours)) == 20


def test_mismatched_detections_raise_a_clear_error():
    bad = detections([[20, 20, 60, 60]])
    bad["labels"] = torch.tensor([3, 3])
    with pytest.raises(ValueError, match="disagree"):
        Tracker().update(bad)


# ------------------------------------------------------------------ on a ToyCity clip


def predicted_id(target: dict, frame: dict, gt_id: int) -> int | None:
    from course_lib.tracking.track_metrics import match_to_ground_truth

    return match_to_ground_truth(target, frame).get(gt_id)


def visible(target: dict, gt_id: int, min_area: int = 150) -> bool:
    index = (target["track_ids"] == gt_id).nonzero()
    return len(index) > 0 and int(target["masks"][index[0, 0]].sum()) >= min_area


def test_ids_survive_a_crossing_and_a_short_occlusion_on_toycity():
    from course_lib.data.toycity import clip
    from course_lib.tracking.track_metrics import crossings, id_switches, noisy_detections, run_tracker
    from course_lib.tracking.trackers import make_tracker

    targets = [target for _, target in clip(6, 30, 256, 512, fps=25)]
    # Two same-class objects whose boxes overlap for some frames; right after, one of them also
    # goes undetected for 3 frames. Both stay well visible from 2 frames before to 2 frames after.
    candidates = []
    for (a, b), overlap in crossings(targets).items():
        gap = range(overlap[-1] + 1, overlap[-1] + 4)
        before, after = overlap[0] - 2, gap[-1] + 2
        if before >= 0 and after < len(targets) and all(visible(targets[k], i) for k in range(before, after + 1) for i in (a, b)):
            candidates.append((a, b, gap, before, after))
    assert candidates, "the clip should contain a crossing of two well-visible objects"
    a, b, gap, before, after = candidates[0]
    detections = noisy_detections(targets, seed=0, hide={a: gap})
    full = run_tracker(make_tracker("course"), detections, 256, 512)
    for gt_id in (a, b):
        assert predicted_id(targets[before], full[before], gt_id) == predicted_id(targets[after], full[after], gt_id) is not None
    assert predicted_id(targets[after], full[after], a) != predicted_id(targets[after], full[after], b)
    # Plain IoU matching has no memory: the hidden object comes back with a new id.
    iou_only = run_tracker(make_tracker("iou"), detections, 256, 512)
    assert predicted_id(targets[before], iou_only[before], a) != predicted_id(targets[after], iou_only[after], a)
    assert id_switches(targets, full) < id_switches(targets, iou_only)


def test_a_person_cut_to_a_sliver_by_traffic_keeps_its_id():
    from course_lib.data.toycity import clip
    from course_lib.tracking.track_metrics import noisy_detections, run_tracker

    # ToyCity clip 5 with heavy occlusion: at the zebra crossing person 4 walks behind another person
    # and a bicycle, three quarters hidden.
    targets = [target for _, target in clip(5, 20, 256, 512, fps=25, occlusion=0.9)]
    detections = noisy_detections(targets, seed=0)
    person, sliver_frame = 4, 13
    assert all(float(t["occlusion"][t["track_ids"] == person]) > 0.7 for t in targets[8:19])
    # The premise: in frame 13 the person's mask overlaps its own track's by less than the mask
    # gate, while the boxes still agree.
    tracker = Tracker()
    for frame in detections[:sliver_frame]:
        tracker.update(frame)
    track = next(t for t in tracker.tracks if t.track_id == person)
    index = int((targets[sliver_frame]["track_ids"] == person).nonzero()[0, 0])
    seen = detections[sliver_frame]
    predicted = torch.tensor(track.predicted_box()[None], dtype=torch.float32)
    roi = masks_to_rois(seen["masks"], seen["boxes"][index:index + 1], 28, rows=torch.tensor([index]))
    mask_overlap = roi_mask_iou(predicted, track.roi[None], seen["boxes"][index:index + 1], roi)
    assert float(mask_overlap) < tracker.iou_gate <= tracker.box_gate <= float(box_iou(predicted, seen["boxes"][index:index + 1]))
    full = run_tracker(Tracker(), detections, 256, 512)
    ids = [predicted_id(targets[k], full[k], person) for k in range(8, 19)]
    assert len(set(ids) - {None}) == 1 and ids.count(None) <= 2


def test_trackeval_scores_the_course_trackers_steps_in_the_expected_order(tmp_path):
    from course_lib.data.toycity import clip
    from course_lib.tracking.track_metrics import compare_trackers, noisy_detections
    from course_lib.tracking.trackers import ABLATION

    targets = [target for _, target in clip(6, 20, 256, 512, fps=25)]
    table = compare_trackers(ABLATION, {"seed6": targets}, {"seed6": noisy_detections(targets, seed=0)}, str(tmp_path))
    assert list(table) == ["none", "iou", "course", "course-kalman"]
    assert table["course"]["IDSW"] < table["iou"]["IDSW"] < table["none"]["IDSW"]
    assert table["course-kalman"]["IDSW"] < table["iou"]["IDSW"]
    assert table["none"]["HOTA"] < table["iou"]["HOTA"] and table["none"]["HOTA"] < table["course"]["HOTA"]
    assert table["course"]["flicker"] < table["iou"]["flicker"]  # smoothing steadies the masks


def test_id_switches_and_flicker_on_hand_made_frames():
    from course_lib.tracking.track_metrics import id_switches, mask_flicker

    boxes = [[[10 + 5 * t, 20, 40 + 5 * t, 50]] for t in range(4)]
    gt = [{**detections(b), "track_ids": torch.tensor([7])} for b in boxes]
    same = [{**detections(b), "track_ids": torch.tensor([1])} for b in boxes]
    switching = [{**detections(b), "track_ids": torch.tensor([1 if t < 2 else 2])} for t, b in enumerate(boxes)]
    assert id_switches(gt, same) == 0 and id_switches(gt, switching) == 1
    assert mask_flicker(gt) == 0.0  # pure translation: no shape change once aligned by the box
    grown = [{**detections([[10, 20, 40, 50 + 4 * (t % 2)]]), "track_ids": torch.tensor([7])} for t in range(4)]
    assert mask_flicker(grown) < 0.05  # scaling is aligned away too, up to rasterisation
    cut = ellipses([[10, 20, 40, 50]])
    cut[:, 35:, 15:25] = 0  # a bite out of the bottom: a shape change, the box stays the same
    changed = [{"masks": m, "track_ids": torch.tensor([7])} for m in (ellipses([[10, 20, 40, 50]]), cut)]
    assert mask_flicker(changed) > 0.1
