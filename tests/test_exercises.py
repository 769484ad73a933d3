"""The exercise checkers accept correct answers and reject typical wrong ones with the right hint."""

import math

import pytest

from course_lib import exercises


# --- anchors
def anchor_right(position, stride, size, ratio):
    cx, cy = position[0] * stride, position[1] * stride
    w, h = size / math.sqrt(ratio), size * math.sqrt(ratio)
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def anchor_roadmap(position, stride, size, ratio):
    cx, cy = position[0] * stride, position[1] * stride
    return (cx - size / 2, cy - size * ratio / 2, cx + size / 2, cy + size * ratio / 2)


def anchor_cell_middle(position, stride, size, ratio):
    return tuple(v + stride / 2 for v in anchor_right(position, stride, size, ratio))


def test_check_anchor(capsys):
    exercises.check_anchor(anchor_right)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="AREA"):
        exercises.check_anchor(anchor_roadmap)
    with pytest.raises(AssertionError, match="middle of the stride cell"):
        exercises.check_anchor(anchor_cell_middle)


# --- IoU
def iou_right(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def iou_no_clamp(a, b):
    inter = (min(a[2], b[2]) - max(a[0], b[0])) * (min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def iou_sum_of_areas(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return w * h / (area(a) + area(b))


def test_check_iou(capsys):
    exercises.check_iou(iou_right)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="clamp the intersection"):
        exercises.check_iou(iou_no_clamp)
    with pytest.raises(AssertionError, match="counted twice"):
        exercises.check_iou(iou_sum_of_areas)


# --- NMS
def nms_right(boxes, scores, threshold, order=None):
    order = scores.argsort(descending=True).tolist() if order is None else order
    keep = []
    for i in order:
        if all(iou_right(boxes[i].tolist(), boxes[j].tolist()) <= threshold for j in keep):
            keep.append(i)
    return keep


def nms_unsorted(boxes, scores, threshold):
    return nms_right(boxes, scores, threshold, order=range(len(boxes)))


def test_check_nms(capsys):
    exercises.check_nms(nms_right)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="decreasing score"):
        exercises.check_nms(nms_unsorted)
    with pytest.raises(AssertionError, match="wrong order"):
        exercises.check_nms(lambda b, s, t: sorted(nms_right(b, s, t)))


# --- bilinear
def bilinear_right(f, y, x):
    y0, x0 = math.floor(y), math.floor(x)
    y1, x1 = min(y0 + 1, f.shape[0] - 1), min(x0 + 1, f.shape[1] - 1)
    ly, lx = y - y0, x - x0
    return float(
        (1 - ly) * (1 - lx) * f[y0, x0] + (1 - ly) * lx * f[y0, x1] + ly * (1 - lx) * f[y1, x0] + ly * lx * f[y1, x1]
    )


def test_check_bilinear(capsys):
    exercises.check_bilinear(bilinear_right)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="rounding"):
        exercises.check_bilinear(lambda f, y, x: float(f[round(y), round(x)]))
    with pytest.raises(AssertionError, match="swapped"):
        exercises.check_bilinear(lambda f, y, x: bilinear_right(f.T, y, x) if x < f.shape[0] else 0.0)


def test_failure_message_names_input_and_values():
    with pytest.raises(AssertionError) as info:
        exercises.check_iou(lambda a, b: 0.0)
    message = str(info.value)
    assert "box_a=" in message and "expected" in message and "got" in message and "hint" in message
