"""Every exercise: a stub is "not attempted", each recorded typical mistake gets its hint, the reference passes.

And the book agrees with the registry: each chapter's Exercises section checks exactly its
registered exercises with a stub (never the solution), shows the reference solution in a dropdown,
and book/exercises.md is the page the registry generates.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from course_lib import exercises
from course_lib.exercises import REGISTRY, ExerciseFailed

ROOT = Path(__file__).resolve().parents[1]
NAMES = list(REGISTRY)


@pytest.mark.parametrize("name", NAMES)
def test_reference_solution_passes(name, capsys):
    exercises.check(name, REGISTRY[name].solution)
    out = capsys.readouterr().out
    assert out.startswith("✓") and out.count("\n") == 1, "one ✓ line"


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
def test_every_typical_mistake_gets_its_hint(name):
    exercise = REGISTRY[name]
    assert len(exercise.mistakes) >= 2, "record the typical mistakes, so their hints are tested"
    for mistake in exercise.mistakes:
        with pytest.raises(ExerciseFailed) as info:
            exercises.check(name, mistake.answer)
        message = str(info.value)
        assert f"hint: {mistake.hint}" in message, f"{name}: the mistake did not earn its hint:\n{message}"
        assert "input (" in message and "expected:" in message and "got:" in message


def test_an_unrecognised_wrong_answer_gets_the_general_hint():
    with pytest.raises(AssertionError, match=re.escape(REGISTRY["iou"].hint)):
        exercises.check("iou", lambda a, b: 0.123)


def test_solution_prints_the_reference_source(capsys):
    source = exercises.solution("anchor")
    assert source.startswith("def anchor(") and source in capsys.readouterr().out


def test_reference_ap_agrees_with_cocoeval():
    """The AP exercise's reference (no independent truth in its checker) against pycocotools itself."""
    import numpy as np
    import torch

    from course_lib.evaluation.coco_eval import coco_metrics

    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(6, 32, 32, dtype=torch.uint8)
    for i in range(6):
        masks[i, 4 * i : 4 * i + 4, 2:30] = 1
    gt = {"masks": masks, "labels": torch.ones(6, dtype=torch.int64), "boxes": torch.zeros(6, 4)}
    scores = torch.rand(8, generator=g)
    pred_masks = torch.cat([masks[[0, 1, 2, 4]], torch.zeros(4, 32, 32, dtype=torch.uint8)])
    pred_masks[4:, 28:, :] = 1  # four false positives off the objects
    pred = {"masks": pred_masks[:, None].float(), "labels": torch.ones(8, dtype=torch.int64), "scores": scores, "boxes": torch.zeros(8, 4)}
    metrics = coco_metrics([pred], [gt], ["__background__", "car"], iou_types=("segm",))["segm"]
    order = scores.argsort(descending=True)
    flags = [1 if i < 4 else 0 for i in order.tolist()]
    precision, recall = exercises.REGISTRY["precision_recall"].solution(flags, 6)
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
