"""Every exercise: a stub is "not attempted", each mistake of its bank gets its own hint, the reference passes every case.

The checkers' holes found by trying subtly wrong answers each have a test here (a threshold tie in
NMS, anchor labels at 0.7 and 0.3, argmax ties, the gate, the FPN scale), and so does the feedback
(None on one case, an exception, a large tensor, the hint of the mistake that explains every
failing case). And the book agrees with the registry: each chapter's Exercises section checks
exactly its registered exercises with a stub (never the solution), shows the reference solution in
a dropdown, and book/exercises.md is the page the registry generates.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torchvision

from course_lib import exercises
from course_lib.exercises import REGISTRY, Exercise, ExerciseFailed, Mistake
from course_lib.exercises import core
from course_lib.exercises.heads import every_best, labels_by

ROOT = Path(__file__).resolve().parents[1]
NAMES = list(REGISTRY)


@pytest.mark.parametrize("name", NAMES)
def test_reference_solution_passes_every_case(name, capsys):
    exercises.check(name, REGISTRY[name].solution)
    out = capsys.readouterr().out
    assert out.startswith("✓") and out.count("\n") == 1, "one ✓ line"


@pytest.mark.parametrize("name", NAMES)
def test_every_exercise_has_hand_picked_and_generated_cases(name):
    hand, generated = exercises.count_cases(name)
    assert hand >= 2 and generated >= 4, "hand-picked cases and generated edge and random cases"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("stub", ["raise", "ellipsis"])
def test_stub_is_not_attempted(name, stub, capsys):
    def raises(*args):
        raise NotImplementedError

    def ellipsis(*args):
        ...

    exercises.check(name, raises if stub == "raise" else ellipsis)
    out = capsys.readouterr().out
    assert "not attempted yet" in out and "✓" not in out and out.count("\n") == 1


@pytest.mark.parametrize("name", NAMES)
def test_every_mistake_of_the_bank_gets_its_own_hint(name):
    exercise = REGISTRY[name]
    assert len(exercise.mistakes) >= 3, "a bank of at least three subtle mistakes"
    for mistake in exercise.mistakes:
        with pytest.raises(ExerciseFailed) as info:
            exercises.check(name, mistake.answer)
        message = str(info.value)
        assert f"hint: {mistake.hint}" in message, f"{name}: the mistake did not earn its hint:\n{message}"
        assert "input:" in message and "expected:" in message and "got:" in message and f'exercises.case("{name}", ' in message


def test_an_unrecognised_wrong_answer_gets_the_general_hint():
    with pytest.raises(AssertionError, match=re.escape(REGISTRY["iou"].hint)):
        exercises.check("iou", lambda a, b: 0.123)


def test_solution_prints_the_reference_source(capsys):
    source = exercises.solution("anchor")
    assert source.startswith("def anchor(") and source in capsys.readouterr().out


# --- the wrong answers the checkers used to accept --------------------------------------------------


def _rejected(name, answer) -> str:
    with pytest.raises(ExerciseFailed) as info:
        exercises.check(name, answer)
    return str(info.value)


def _nms_suppressing(boxes, scores, threshold, suppresses):
    overlaps = torchvision.ops.box_iou(boxes, boxes)
    keep = []
    for i in scores.argsort(descending=True).tolist():
        if not any(suppresses(overlaps[i, j], threshold) for j in keep):
            keep.append(i)
    return keep


def test_nms_suppressing_at_an_iou_equal_to_the_threshold_is_rejected():
    """torchvision keeps a box whose IoU equals the threshold: [[0,0,10,10], [0,0,10,5]] at 0.5."""
    pair = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5]])
    assert torchvision.ops.nms(pair, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]
    message = _rejected("nms", lambda b, s, t: _nms_suppressing(b, s, t, lambda iou, t: iou >= t))
    assert "GREATER than the threshold" in message


def test_nms_returning_none_for_no_boxes_is_rejected_with_that_input():
    message = _rejected("nms", lambda b, s, t: None if len(b) == 0 else _nms_suppressing(b, s, t, lambda iou, t: iou > t))
    assert "returned None" in message and "empty Tensor float32 of shape (0, 4)" in message and "not None" in message


@pytest.mark.parametrize("positive, negative, best_anchors", [
    (lambda v: v > 0.7, lambda v: v < 0.3, every_best),
    (lambda v: v >= 0.7, lambda v: v <= 0.3, every_best),
    (lambda v: v >= 0.7, lambda v: v < 0.3, lambda iou: iou.argmax(dim=1)),
], ids=["positive above 0.7", "negative at 0.3", "argmax drops ties"])
def test_anchor_labels_threshold_and_tie_mistakes_are_rejected(positive, negative, best_anchors):
    _rejected("anchor_labels", lambda iou: labels_by(iou, positive, negative, best_anchors))


def test_anchor_labels_follows_matcher_for_a_box_overlapping_nothing():
    """The old solution's `best_per_box > 0` guard departed from torchvision's Matcher here."""
    from torchvision.models.detection._utils import Matcher

    iou = torch.tensor([[0.8, 0.1, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    matches = Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou)
    assert exercises.REGISTRY["anchor_labels"].solution(iou).tolist() == torch.where(matches >= 0, 1.0, 0.0).tolist() == [1.0, 1.0, 1.0]
    guarded = lambda iou: labels_by(iou, lambda v: v >= 0.7, lambda v: v < 0.3,
                                         lambda m: ((m == m.max(dim=1, keepdim=True).values) & (m.max(dim=1, keepdim=True).values > 0)).any(dim=0))
    assert "no > 0 guard" in _rejected("anchor_labels", guarded)


def test_gated_matches_gates_before_assigning_as_the_tracker_does():
    """IoU [[0.9, 0.25], [0.8, 0.0]], gate 0.3: gating first gives [(0, 0)]; assigning first would give [(1, 0)]."""
    from scipy.optimize import linear_sum_assignment

    iou = torch.tensor([[0.9, 0.25], [0.8, 0.0]], dtype=torch.float64)
    assert REGISTRY["gated_matches"].solution(iou, 0.3) == REGISTRY["gated_matches"].expected(iou, 0.3) == [(0, 0)]

    def assign_then_gate(iou, gate):
        rows, cols = linear_sum_assignment(iou.numpy(), maximize=True)
        return sorted((int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= gate)

    assert assign_then_gate(iou, 0.3) == [(1, 0)]
    assert "gate BEFORE assigning" in _rejected("gated_matches", assign_then_gate)


def test_gated_matches_with_an_exclusive_gate_is_rejected():
    def exclusive(iou, gate):
        from scipy.optimize import linear_sum_assignment

        cost = torch.where(iou > gate, 1 - iou, torch.full_like(iou, 1e6))
        rows, cols = linear_sum_assignment(cost.numpy())
        return sorted((int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] > gate)

    assert "the gate is inclusive" in _rejected("gated_matches", exclusive)


def test_fpn_level_with_the_mean_side_is_rejected():
    """A tall pedestrian [0, 0, 20, 800]: sqrt(w h) = 126.5 gives level 3, the mean side 410 gives 4."""
    mean_side = lambda box: min(5, max(2, math.floor(4 + math.log2(((box[2] - box[0]) + (box[3] - box[1])) / 2 / 224) + 1e-6)))
    assert REGISTRY["fpn_level"].expected([0.0, 0, 20, 800]) == 3 and mean_side([0.0, 0, 20, 800]) == 4
    assert "not the mean side" in _rejected("fpn_level", mean_side)


# --- feedback a learner can act on ------------------------------------------------------------------


def test_none_on_one_case_is_reported_with_its_input_not_as_not_attempted(capsys):
    solution = REGISTRY["iou"].solution
    message = _rejected("iou", lambda a, b: None if a == [0.0, 0, 10, 10] and b == [12.0, 0, 20, 10] else solution(a, b))
    assert "returned None" in message and "[12.0, 0, 20, 10]" in message and "not attempted" not in capsys.readouterr().out


def test_an_exception_is_reported_with_the_input_that_raised_it():
    solution = REGISTRY["label_id"].solution

    def crashes_on_zero(value):
        if value == 0:
            raise KeyError("no label")
        return solution(value)

    message = _rejected("label_id", crashes_on_zero)
    assert "raised KeyError: 'no label'" in message and "input:    (0)" in message


def test_a_large_tensor_is_summarised_with_its_first_difference():
    solution = REGISTRY["class_masks"].solution

    def off_in_one_pixel(logits, labels):
        masks = solution(logits, labels)
        if masks.numel() > core.SMALL:
            masks[-1, 1, 2] = 5.0
        return masks

    message = _rejected("class_masks", off_in_one_pixel)
    k = int(re.search(r"the first is case (\d+)", message).group(1))
    shape = tuple(solution(*exercises.case("class_masks", k)).shape)
    assert f"Tensor float32 of shape {shape}" in message
    assert f"first difference at index ({shape[0] - 1}, 1, 2):" in message and "got 5" in message


def test_case_returns_a_fresh_copy_of_the_failing_input():
    first = exercises.case("nms", 0)
    first[0][0, 0] = 1e9
    assert exercises.case("nms", 0)[0][0, 0] == 0.0
    boxes, scores, threshold = exercises.case("nms", 0)
    assert torchvision.ops.nms(boxes, scores, threshold).tolist() == REGISTRY["nms"].solution(boxes, scores, threshold)


@pytest.fixture
def scratch_exercise():
    """A throw-away exercise, registered for one test and removed after it."""
    def register(**fields):
        exercise = Exercise(name="scratch_double", chapter="book/none", title="Double", solution=lambda x: 2 * x,
                            cases=lambda: [(1,), (2,)], generated=lambda: [(-3,), (0,)], hint="general hint", **fields)
        REGISTRY[exercise.name] = exercise
        return exercise

    yield register
    REGISTRY.pop("scratch_double", None)
    core._cases_and_expected.cache_clear()


def test_the_hint_is_the_mistake_that_explains_every_failing_case(scratch_exercise):
    """A mistake that matches only the first failing case must not win over one that matches them all."""
    scratch_exercise(mistakes=(Mistake(lambda x: 2 * x + 1 if x == 1 else 2 * x, "matches case 0 only"),
                               Mistake(lambda x: 2 * x + 1 if x > 0 else 0, "explains every failing case")))
    # wrong on cases 0 and 1 (x = 1, 2), right on the generated -3 and 0
    message = _rejected("scratch_double", lambda x: 2 * x + 1 if x > 0 else 2 * x)
    assert "2 of 4 cases fail" in message and "hint: explains every failing case" in message, message


def test_no_mistake_explaining_every_failing_case_gives_the_general_hint(scratch_exercise):
    scratch_exercise(mistakes=(Mistake(lambda x: 2 * x + 1 if x == 1 else 2 * x, "matches case 0 only"),))
    assert "hint: general hint" in _rejected("scratch_double", lambda x: 2 * x + 1)


@pytest.mark.parametrize("seed, num_objects, found, false_positives", [(0, 6, 4, 4), (1, 6, 6, 0), (2, 8, 1, 7), (3, 4, 0, 3), (4, 20, 12, 9)])
def test_reference_precision_recall_and_ap_agree_with_cocoeval(seed, num_objects, found, false_positives):
    """The precision-recall and AP exercises' references (no field function in their checkers) against pycocotools itself.

    One class, objects as horizontal stripes; ``found`` of them detected exactly, plus false positives off
    every object, all with random scores: COCOeval's AP then equals the exercises' AP of that ranking.
    """
    import numpy as np

    from course_lib.evaluation.coco_eval import coco_metrics

    g = torch.Generator().manual_seed(seed)
    height = 4 * num_objects + 8
    masks = torch.zeros(num_objects, height, 32, dtype=torch.uint8)
    for i in range(num_objects):
        masks[i, 4 * i : 4 * i + 4, 2:30] = 1
    gt = {"masks": masks, "labels": torch.ones(num_objects, dtype=torch.int64), "boxes": torch.zeros(num_objects, 4)}
    detected = torch.randperm(num_objects, generator=g)[:found]
    pred_masks = torch.cat([masks[detected], torch.zeros(false_positives, height, 32, dtype=torch.uint8)])
    pred_masks[found:, -4:, :] = 1  # the false positives, below every object
    scores = torch.rand(found + false_positives, generator=g)
    pred = {"masks": pred_masks[:, None].float(), "labels": torch.ones(len(scores), dtype=torch.int64), "scores": scores, "boxes": torch.zeros(len(scores), 4)}
    metrics = coco_metrics([pred], [gt], ["__background__", "car"], iou_types=("segm",))["segm"]
    flags = [1 if i < found else 0 for i in scores.argsort(descending=True).tolist()]
    precision, recall = exercises.REGISTRY["precision_recall"].solution(flags, num_objects)
    ap = exercises.REGISTRY["average_precision"].solution(recall, precision)
    assert np.isclose(ap, metrics["AP"], atol=1e-6), (ap, metrics["AP"])


# --- the book agrees with the registry ----------------------------------------------------------


def chapter_text(chapter: str) -> str:
    return (ROOT / f"{chapter}.py").read_text()


@pytest.mark.parametrize("chapter", list(exercises.by_chapter()))
def test_chapter_checks_its_exercises_with_stubs(chapter):
    text = chapter_text(chapter)
    section = text[text.index("# ## Exercises"):]
    assert text.rstrip().endswith("# ````"), "the Exercises section ends the chapter"
    checked = re.findall(r'exercises\.check\("(\w+)"', text)
    assert checked == [e.name for e in exercises.by_chapter()[chapter]], "the chapter checks exactly its registered exercises, in order"
    for exercise in exercises.by_chapter()[chapter]:
        stub = re.search(rf"def \w+\(.*?\):\n    raise NotImplementedError.*\n\n\nexercises\.check\(\"{exercise.name}\"", section)
        assert stub, f"{exercise.name}: the notebook cell holds a stub, never the solution"
        module = "/" + exercise.solution.__module__.replace(".", "/") + ".py"
        assert f":label: exercise-{exercise.name}\n" in section
        assert f"# ````{{solution}} exercise-{exercise.name}\n# :class: dropdown\n" in section
        assert f"# ```{{literalinclude}} {module}\n# :pyobject: {exercise.solution.__name__}\n" in section


def test_weeks_one_to_three_have_two_exercises_per_chapter():
    chapters = sorted(str(p.relative_to(ROOT).with_suffix("")) for week in ("week1", "week2", "week3")
                      for p in (ROOT / "book" / week).glob("*.py"))
    counts = {c: len(exercises.by_chapter().get(c, [])) for c in chapters}
    assert all(n >= 2 for n in counts.values()), counts


def test_exercises_page_is_generated_from_the_registry():
    page = (ROOT / "book" / "exercises.md").read_text()
    assert page == exercises.exercises_page(), (
        'regenerate: python -c "from course_lib import exercises; '
        "open('book/exercises.md', 'w').write(exercises.exercises_page())\""
    )
