"""The exercises' machinery: :class:`Exercise`, the registry, :func:`check`, :func:`case`, :func:`solution` and the book's page."""

from __future__ import annotations

import copy
import functools
import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

SMALL = 16  # tensors and arrays of at most this many numbers are printed in full


class ExerciseFailed(AssertionError):
    """A learner's answer disagrees with the reference on at least one case."""


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer, written as a learner would write it, and the hint it should get."""

    answer: Callable[..., Any]
    hint: str


def no_cases() -> list[tuple]:
    return []


@dataclass(frozen=True)
class Exercise:
    """One checked exercise.

    ``cases()`` returns the hand-picked argument tuples, ``generated()`` the generated ones (edge
    cases: empty, single, exact ties at every threshold the task names, degenerate shapes; then
    random cases from a seeded generator); the check runs both, hand-picked first. ``expected(*args)``
    (default: the reference solution) gives the right value, from the field's implementation
    (torchvision, pycocotools, scipy, numpy) wherever one exists. Values are compared as float
    arrays within ``atol``. ``mistakes`` is the exercise's bank of typical wrong answers.
    """

    name: str
    chapter: str  # book path without suffix, e.g. "book/week1/02_anchors"
    title: str
    solution: Callable[..., Any]
    cases: Callable[[], Sequence[tuple]]
    hint: str
    mistakes: tuple[Mistake, ...] = ()
    expected: Callable[..., Any] | None = None
    agrees_with: str = "the reference solution"
    atol: float = 1e-5
    generated: Callable[[], Sequence[tuple]] = no_cases


REGISTRY: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    if exercise.name in REGISTRY:
        raise ValueError(f"two exercises are named {exercise.name!r}")
    REGISTRY[exercise.name] = exercise
    return exercise


@functools.cache
def _cases_and_expected(name: str) -> tuple[tuple[tuple, ...], tuple[Any, ...]]:
    """Every case of exercise ``name`` (hand-picked, then generated) and its expected value, computed once."""
    exercise = REGISTRY[name]
    cases = tuple(exercise.cases()) + tuple(exercise.generated())
    truth = exercise.expected or exercise.solution
    return cases, tuple(truth(*copy.deepcopy(args)) for args in cases)


def case(name: str, k: int) -> tuple:
    """The arguments of case ``k`` of exercise ``name`` (a fresh copy): ``answer(*exercises.case(name, k))`` reproduces it."""
    return copy.deepcopy(_cases_and_expected(name)[0][k])


def count_cases(name: str) -> tuple[int, int]:
    """(hand-picked, generated) case counts of exercise ``name``."""
    hand = len(REGISTRY[name].cases())
    return hand, len(_cases_and_expected(name)[0]) - hand


@dataclass(frozen=True)
class Raised:
    """What an answer did instead of returning: the exception it raised."""

    error: BaseException

    def __str__(self) -> str:
        return f"raised {type(self.error).__name__}: {self.error}"


def outcome(answer: Callable[..., Any], args: tuple) -> Any:
    """``answer(*args)`` on a copy of the arguments, or :class:`Raised` holding the exception it raised."""
    try:
        return answer(*copy.deepcopy(args))
    except Exception as error:  # reported with the input that raised it, never as a bare traceback
        return Raised(error)


def _as_array(value: Any) -> np.ndarray | None:
    """A float array of ``value`` (numbers, tensors, arrays, nested lists/tuples), or None if it is none of those."""
    if value is None or isinstance(value, Raised):
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def same(got: Any, expected: Any, atol: float) -> bool:
    """True when ``got`` and ``expected`` are the same numbers (same shape, NaN where NaN), within ``atol``."""
    if isinstance(expected, dict):
        return isinstance(got, dict) and got.keys() == expected.keys() and all(same(got[k], expected[k], atol) for k in expected)
    if isinstance(expected, str):
        return got == expected
    if isinstance(expected, (list, tuple)) and any(isinstance(e, str) for e in expected):
        return isinstance(got, (list, tuple)) and list(got) == list(expected)
    a, b = _as_array(got), _as_array(expected)
    return a is not None and b is not None and a.shape == b.shape and bool(np.allclose(a, b, rtol=0, atol=atol, equal_nan=True))


def _same_outcome(a: Any, b: Any, atol: float) -> bool:
    """Two answers' outcomes agree: the same exception type, both None, or the same numbers."""
    if isinstance(a, Raised) or isinstance(b, Raised):
        return isinstance(a, Raised) and isinstance(b, Raised) and type(a.error) is type(b.error)
    if a is None or b is None:
        return a is None and b is None
    return same(a, b, atol)


def show(value: Any) -> str:
    """A short printable form: tensors and arrays of up to :data:`SMALL` numbers in full, larger ones by dtype and shape."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        numel = value.numel() if isinstance(value, torch.Tensor) else value.size
        kind = f"{type(value).__name__} {str(value.dtype).removeprefix('torch.')} of shape {tuple(value.shape)}"
        if numel == 0:
            return f"empty {kind}"
        if numel > SMALL:
            return kind
        values = value.tolist()
        if value.dtype.is_floating_point if isinstance(value, torch.Tensor) else np.issubdtype(value.dtype, np.floating):
            values = np.round(np.asarray(values, dtype=np.float64), 4).tolist()
        return f"{type(value).__name__}({values})"
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return "None"
    text = repr(value)
    return text if len(text) <= 300 else text[:300] + " ..."


def first_difference(got: Any, expected: Any, atol: float) -> str:
    """Where a large ``got`` first departs from ``expected`` (index and both values), or "" when that says nothing more."""
    a, b = _as_array(got), _as_array(expected)
    if a is None or b is None or max(a.size, b.size) <= SMALL and a.ndim <= 1:
        return ""
    if a.shape != b.shape:
        return f"  shape: expected {b.shape}, got {a.shape}\n"
    differs = ~np.isclose(a, b, rtol=0, atol=atol, equal_nan=True)
    index = tuple(int(i) for i in np.argwhere(differs)[0])
    return f"  first difference at index {index}: expected {b[index]:.6g}, got {a[index]:.6g}\n"


def _hint(exercise: Exercise, cases: Sequence[tuple], outcomes: Sequence[Any], failing: Sequence[int]) -> str:
    """The hint of the bank's mistake that explains the learner's answer best, else the exercise's general hint.

    A mistake that gives the learner's outcome on every case wins; failing that, one that gives it on
    every failing case. A mistake that matches only one failing case does not earn its hint.
    """
    def explains(mistake: Mistake, ks: Sequence[int]) -> bool:
        return all(_same_outcome(outcome(mistake.answer, cases[k]), outcomes[k], exercise.atol) for k in ks)

    with warnings.catch_warnings():  # the bank's wrong answers may warn (a mean of nothing): noise beside the learner's own output
        warnings.simplefilter("ignore")
        for ks in (range(len(cases)), failing):
            found = next((m for m in exercise.mistakes if explains(m, ks)), None)
            if found:
                return found.hint
    return exercise.hint


def _is_stub(value: Any) -> bool:
    return value is None or value is Ellipsis or isinstance(value, Raised) and isinstance(value.error, NotImplementedError)


def check(name: str, answer: Callable[..., Any]) -> None:
    """Run the learner's ``answer`` on every case of exercise ``name`` and print one line: ✓ or "not attempted yet".

    "Not attempted yet" means every case raised ``NotImplementedError`` or returned None (a stub).
    Otherwise a wrong value, a None or an exception on any case raises :class:`ExerciseFailed`
    naming the first failing case, its input, the expected and the obtained value and a hint.
    Nothing is returned, so a notebook cell ending in ``check`` shows only that line.
    """
    exercise = REGISTRY[name]
    cases, expected = _cases_and_expected(name)
    outcomes = [outcome(answer, args) for args in cases]
    if all(_is_stub(o) for o in outcomes):
        print(f'· {exercise.title}: not attempted yet (exercises.solution("{name}") shows one)')
        return
    failing = [k for k, (got, want) in enumerate(zip(outcomes, expected)) if isinstance(got, Raised) or got is None or not same(got, want, exercise.atol)]
    hand, generated = count_cases(name)
    if not failing:
        print(f"✓ {exercise.title}: {hand + generated} cases ({hand} hand-picked, {generated} generated) agree with {exercise.agrees_with}")
        return
    k = failing[0]
    got, want = outcomes[k], expected[k]
    obtained = str(got) if isinstance(got, Raised) else "returned None" if got is None else show(got)
    raise ExerciseFailed(
        f"{exercise.title}: {len(failing)} of {len(cases)} cases fail; the first is case {k} "
        f'(exercises.case("{name}", {k}) returns its input)\n'
        f"  input:    ({', '.join(show(a) for a in cases[k])})\n"
        f"  expected: {show(want)}\n  got:      {obtained}\n"
        f"{first_difference(got, want, exercise.atol)}"
        f"  hint: {_hint(exercise, cases, outcomes, failing)}")


def solution(name: str) -> str:
    """Print (and return) the source of exercise ``name``'s reference solution."""
    source = inspect.getsource(REGISTRY[name].solution)
    print(source)
    return source


PAGE_INTRO = """# Exercises

Every chapter ends with checked exercises: you write one small function in the chapter's notebook
and the cell after it runs `exercises.check` on hand-picked and generated cases (empty inputs, a
single element, exact ties at every threshold the task names, degenerate boxes, then random cases
from a seeded generator). The expected value comes from the field's own implementation wherever
one exists: torchvision, pycocotools, scipy, numpy. While the function is still a stub the check
says "not attempted yet" and the notebook runs on; a wrong answer stops with the first failing
case (its input, the expected and the obtained value, or the exception it raised) and a hint: the
hint of the typical mistake that explains every failing case. `exercises.case("name", k)` returns
the input of case `k`, to run your function on it again. A right answer prints a ✓ line. The
reference solutions live in `course_lib.exercises`: on this site each one sits in a closed
dropdown under its exercise, and in Jupyter or Colab `exercises.solution("name")` prints it.

This page is generated from the exercises' registry (`course_lib.exercises.exercises_page()`)
and a test keeps the two in step.
"""


def exercises_page() -> str:
    """The book's Exercises page (MyST): every exercise, chapter by chapter, then the table of what checks each."""
    lines = [PAGE_INTRO]
    for chapter, chapter_exercises in by_chapter().items():
        lines.append(f"- {{doc}}`/{chapter}`")
        lines += [f"  - {{ref}}`{e.title} <exercise-{e.name}>` (`{e.name}`)" for e in chapter_exercises]
    lines += ["", "## What checks each exercise", "",
              "Cases: hand-picked + generated. Mistakes: the bank of typical wrong answers, each of which "
              "`make test` asserts is rejected with its own hint.", "",
              "| Exercise | Hand-picked cases | Generated cases | Mistakes | Checked against |", "| --- | --- | --- | --- | --- |"]
    for exercise in REGISTRY.values():
        hand, generated = count_cases(exercise.name)
        lines.append(f"| `{exercise.name}` | `{hand}` | `{generated}` | `{len(exercise.mistakes)}` | {exercise.agrees_with} |")  # code: counted, not typed
    return "\n".join(lines) + "\n"


def by_chapter() -> dict[str, list[Exercise]]:
    """The registered exercises grouped by chapter, in registration (= book) order."""
    chapters: dict[str, list[Exercise]] = {}
    for exercise in REGISTRY.values():
        chapters.setdefault(exercise.chapter, []).append(exercise)
    return chapters
