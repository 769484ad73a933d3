"""ToyCity clips: determinism, per-frame ground truth, and track ids that follow moving objects."""

import numpy as np
import pytest
import torch

from course_lib.data.toycity import clip
from course_lib.data.toycity.video import band_speeds, move, spawn
from course_lib.data.toycity.world import Actor, in_traffic, populate, sample_camera, sample_look, sample_street
from course_lib.structures.instances import boxes_from_masks

SIZE = dict(height=128, width=256)


@pytest.fixture(scope="module")
def frames():
    return clip(3, 30, **SIZE)


def test_same_seed_same_clip(frames):
    again = clip(3, 30, **SIZE)
    for (image_a, target_a), (image_b, target_b) in zip(frames, again):
        assert np.array_equal(image_a, image_b)
        assert all(torch.equal(target_a[k], target_b[k]) for k in target_a)


def test_every_frame_has_consistent_ground_truth(frames):
    for t, (image, target) in enumerate(frames):
        assert image.shape == (128, 256, 3) and int(target["image_id"]) == t
        ids = target["track_ids"]
        assert ids.dtype == torch.int64 and len(ids) == len(target["labels"]) and len(set(ids.tolist())) == len(ids)
        assert target["masks"].sum(0).max() <= 1
        if len(ids):
            assert torch.equal(target["boxes"], boxes_from_masks(target["masks"]))


def test_tracks_keep_their_class_move_and_come_and_go(frames):
    label_of, first_box, moved = {}, {}, set()
    for _, target in frames:
        for track, label, box in zip(target["track_ids"].tolist(), target["labels"].tolist(), target["boxes"]):
            assert label_of.setdefault(track, label) == label
            if track in first_box and not torch.equal(first_box[track], box):
                moved.add(track)
            first_box.setdefault(track, box)
    first, last = set(frames[0][1]["track_ids"].tolist()), set(frames[-1][1]["track_ids"].tolist())
    assert moved, "no object moved"
    assert first - last and last - first, "no object left or entered the view"


def test_bad_frame_count_is_rejected():
    with pytest.raises(ValueError, match="num_frames"):
        clip(0, 0, **SIZE)


def test_queued_traffic_never_overlaps_and_crossers_walk_on():
    """The world under the clips: vehicles of one lane (riders of one bike lane) keep their distance."""
    classes = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
    for seed in range(4):
        rng = np.random.default_rng(seed)
        street = sample_street(rng, sample_camera(rng, 128, 256))
        actors = populate(rng, street, 12, classes, occlusion=0.5, small_share=0.3)
        speeds = band_speeds(rng, street)
        for actor in actors:
            actor.speed = speeds.get(actor.band, actor.speed)
        for _ in range(100):  # 10 s at 10 fps
            move(actors, street, 0.1)
            actors += spawn(rng, street, actors, classes, speeds, 0.1)
            queued = [a for a in actors if in_traffic(a.band) and a.kind != "rider"]  # a rider rides its vehicle
            for i, a in enumerate(queued):
                for b in queued[i + 1:]:
                    if a.band == b.band:
                        assert abs(a.x - b.x) >= (a.length + b.length) / 2, (seed, a.kind, b.kind)


def test_a_pedestrian_who_has_crossed_walks_on_along_the_sidewalk():
    rng = np.random.default_rng(0)
    street = sample_street(rng, sample_camera(rng, 128, 256))
    walker = Actor("person", 0.0, street.road[0] + 0.5, 1, 0.0, sample_look(rng, "person"), vz=1.2, band="crossing")
    for _ in range(200):
        move([walker], street, 0.1)
    assert walker.band == "far" and walker.vz == 0.0 and walker.speed == 1.2
