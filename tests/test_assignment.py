"""course_lib.scratch.assignment: grid-cell, point and anchor assignment on hand-made boxes."""

import torch

from course_lib.scratch import assignment

SIZE = (448, 448)  # a 7x7 grid has 64-pixel cells


def test_two_centres_in_one_cell_orphan_the_smaller_object():
    boxes = torch.tensor([[10.0, 10, 110, 110], [40, 40, 70, 70], [300, 300, 400, 400]])
    orphans = assignment.grid_cell_orphans(boxes, SIZE, (7, 7))
    assert orphans.tolist() == [False, True, False]
    assert not assignment.grid_cell_orphans(boxes, SIZE, (56, 56)).any(), "a finer grid separates them"


def test_a_box_with_no_sample_point_inside_is_a_point_orphan():
    # Points sit at 4, 12, ... (stride 8), 8, 24, ... (16), 16, 48, ... (32): none lies in [9, 11).
    boxes = torch.tensor([[9.0, 9, 11, 11], [100, 100, 200, 200]])
    assert assignment.point_orphans(boxes, SIZE).tolist() == [True, False]


def test_a_nested_small_box_keeps_its_points():
    boxes = torch.tensor([[0.0, 0, 300, 300], [100, 100, 140, 140]])
    assert not assignment.point_orphans(boxes, SIZE).any(), "points inside both go to the smaller box"


def test_every_ordinary_object_gets_an_anchor():
    boxes = torch.tensor([[10.0, 10, 60, 110], [200, 200, 400, 300]])
    assert not assignment.anchor_orphans(boxes, SIZE).any()


def test_orphan_rates_counts_objects_and_fractions():
    targets = [{"boxes": torch.tensor([[10.0, 10, 110, 110], [40, 40, 70, 70]])}, {"boxes": torch.zeros(0, 4)}]
    rates = assignment.orphan_rates(targets, SIZE)
    assert rates["objects"] == 2 and rates["grid_cell"] == 0.5
    assert 0.0 <= rates["points"] <= 1.0 and 0.0 <= rates["anchors"] <= 1.0
