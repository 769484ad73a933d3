"""MOTS text format and the TrackEval runner: a perfect tracker scores 1, an id swap scores less."""

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch

from course_lib.data.toycity import clip
from course_lib.evaluation.mots import evaluate_mots, make_disjoint, write_mots


@pytest.fixture(scope="module")
def gt_frames():
    return [target for _, target in clip(3, 16, height=128, width=256)]


def test_written_lines_decode_back_to_the_frames(tmp_path, gt_frames):
    path = write_mots(tmp_path / "seq.txt", gt_frames, first_frame=0)
    lines = [line.split(" ") for line in path.read_text().splitlines()]
    assert len(lines) == sum(len(f["track_ids"]) for f in gt_frames)
    for t, object_id, class_id, height, width, counts in lines:
        frame = gt_frames[int(t)]
        i = frame["track_ids"].tolist().index(int(object_id) % 1000)
        assert int(class_id) == int(frame["labels"][i]) and int(object_id) // 1000 == int(class_id)
        mask = mask_utils.decode({"size": [int(height), int(width)], "counts": counts.encode()})
        assert np.array_equal(mask, frame["masks"][i].numpy())


def test_make_disjoint_gives_shared_pixels_to_the_higher_score():
    masks = torch.zeros((2, 4, 4), dtype=torch.bool)
    masks[0, :2], masks[1, 1:3] = True, True
    out = make_disjoint(masks, torch.tensor([0.2, 0.9]))
    assert out[1].equal(masks[1]) and out[0].sum() == 4 and not (out[0] & out[1]).any()
    assert make_disjoint(masks)[0].equal(masks[0])


def test_track_ids_must_fit_the_id_encoding(tmp_path, gt_frames):
    frame = dict(gt_frames[0], track_ids=gt_frames[0]["track_ids"] + 1000)
    with pytest.raises(ValueError, match="0..999"):
        write_mots(tmp_path / "bad.txt", [frame])


def swap_two_tracks(frames, start):
    """From frame ``start`` on, exchange the ids of the first two tracks of one class seen there."""
    labels, ids = frames[start]["labels"], frames[start]["track_ids"]
    label = next(l for l in labels.tolist() if (labels == l).sum() >= 2)
    a, b = ids[labels == label][:2].tolist()
    out = list(frames[:start])
    for frame in frames[start:]:
        new = frame["track_ids"].clone()
        new[frame["track_ids"] == a], new[frame["track_ids"] == b] = b, a
        out.append(dict(frame, track_ids=new))
    return out


def test_perfect_tracker_scores_one_and_a_swap_scores_less(tmp_path, gt_frames):
    scores = evaluate_mots(gt_frames, {"perfect": gt_frames, "swapped": swap_two_tracks(gt_frames, 8)}, tmp_path)
    perfect, swapped = scores["perfect"], scores["swapped"]
    assert "all" in perfect and len(perfect) >= 3  # "all" and at least two classes
    assert all(m["HOTA"] == 1.0 and m["IDF1"] == 1.0 and m["MOTA"] == 1.0 for m in perfect.values())
    assert swapped["all"]["DetA"] == 1.0  # the same masks ...
    assert swapped["all"]["HOTA"] < 1.0 and swapped["all"]["AssA"] < 1.0 and swapped["all"]["IDSW"] >= 2  # ... wrong ids


def test_frame_count_mismatch_is_an_error(tmp_path, gt_frames):
    with pytest.raises(ValueError, match="frames"):
        evaluate_mots(gt_frames, {"short": gt_frames[:-1]}, tmp_path)


def test_several_clips_are_scored_together_and_per_clip(tmp_path, gt_frames):
    clips = {"first": gt_frames[:8], "second": gt_frames[8:]}
    swapped = {"first": gt_frames[:8], "second": swap_two_tracks(gt_frames, 12)[8:]}  # ids swap mid-clip
    scores = evaluate_mots(clips, {"perfect": clips, "swapped": swapped}, tmp_path)
    assert all(m["HOTA"] == 1.0 for m in scores["perfect"].values())
    assert {seq.split("-")[0] for seq in scores["swapped"]} == {"first", "second", "all"}
    assert all(m["HOTA"] == 1.0 for seq, m in scores["swapped"].items() if seq.startswith("first-"))
    assert scores["swapped"]["all"]["HOTA"] < 1.0
