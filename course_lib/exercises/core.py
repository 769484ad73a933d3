"""The exercises' machinery: :class:`Exercise`, the registry, :func:`check`, :func:`solution` and the book's page."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


class ExerciseFailed(AssertionError):
    """A learner's answer disagrees with the reference on one case."""


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer, written as a learner would write it, and the hint it should get."""

    answer: Callable[..., Any]
    hint: str


@dataclass(frozen=True)
class Exercise:
    """One checked exercise.

    ``cases()`` returns the argument tuples to call with; ``expected(*args)`` (default: the reference
    solution) gives the right value, independently of the solution where the field has a function
    for it (torchvision, pycocotools, course_lib). Values are compared as float arrays within ``atol``.
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


REGISTRY: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    if exercise.name in REGISTRY:
        raise ValueError(f"two exercises are named {exercise.name!r}")
    REGISTRY[exercise.name] = exercise
    return exercise


def _as_array(value: Any) -> np.ndarray | None:
    """A float array of ``value`` (numbers, tensors, arrays, nested lists/tuples), or None if it is none of those."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array


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


def _show(value: Any) -> str:
    """A short printable form: small tensors in full, large ones by shape."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.size == 0 if isinstance(value, np.ndarray) else value.numel() == 0:
            return f"empty {type(value).__name__} of shape {tuple(value.shape)}"
        if (value.size if isinstance(value, np.ndarray) else value.numel()) > 12:
            return f"{type(value).__name__} of shape {tuple(value.shape)}"
        return repr(np.round(np.asarray(value.tolist(), dtype=np.float64), 4).tolist())
    if isinstance(value, float):
        return f"{value:.6g}"
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + " ..."


def _gives(answer: Callable[..., Any], args: tuple, got: Any, atol: float) -> bool:
    try:
        return same(answer(*copy.deepcopy(args)), got, atol)
    except Exception:  # a mistake that cannot even run on this case is not the learner's mistake
        return False


def check(name: str, answer: Callable[..., Any]) -> None:
    """Run the learner's ``answer`` on exercise ``name``'s cases and print one line: ✓ or "not attempted yet".

    A wrong value raises :class:`ExerciseFailed`. Nothing is returned, so a notebook cell ending
    in ``check`` shows only that line.
    """
    exercise = REGISTRY[name]
    cases = exercise.cases()
    for args in cases:
        try:
            got = answer(*copy.deepcopy(args))
        except NotImplementedError:
            got = None
        if got is None or got is Ellipsis:
            print(f'· {exercise.title}: not attempted yet (exercises.solution("{name}") shows one)')
            return
        expected = (exercise.expected or exercise.solution)(*copy.deepcopy(args))
        if same(got, expected, exercise.atol):
            continue
        hint = next((m.hint for m in exercise.mistakes if _gives(m.answer, args, got, exercise.atol)), exercise.hint)
        shown = ", ".join(_show(a) for a in args)
        raise ExerciseFailed(f"{exercise.title}: wrong result for input ({shown})\n"
                             f"  expected: {_show(expected)}\n  got:      {_show(got)}\n  hint: {hint}")
    print(f"✓ {exercise.title}: {len(cases)} cases agree with {exercise.agrees_with}")


def solution(name: str) -> str:
    """Print (and return) the source of exercise ``name``'s reference solution."""
    source = inspect.getsource(REGISTRY[name].solution)
    print(source)
    return source


PAGE_INTRO = """# Exercises

Every chapter ends with checked exercises: you write one small function in the chapter's notebook
and the cell after it runs `exercises.check` on generated cases. While the function is still a
stub the check says "not attempted yet" and the notebook runs on; a wrong answer stops with the
input, the expected and the obtained value and a hint aimed at the usual mistake; a right one
prints a ✓ line. The reference solutions live in `course_lib.exercises`: on this site each one
sits in a closed dropdown under its exercise, and in Jupyter or Colab `exercises.solution("name")`
prints it.

This page is generated from the exercises' registry (`course_lib.exercises.exercises_page()`)
and a test keeps the two in step.
"""


def exercises_page() -> str:
    """The book's Exercises page (MyST): every exercise, chapter by chapter, linked to its place."""
    lines = [PAGE_INTRO]
    for chapter, chapter_exercises in by_chapter().items():
        lines.append(f"- {{doc}}`/{chapter}`")
        lines += [f"  - {{ref}}`{e.title} <exercise-{e.name}>` (`{e.name}`)" for e in chapter_exercises]
    return "\n".join(lines) + "\n"


def by_chapter() -> dict[str, list[Exercise]]:
    """The registered exercises grouped by chapter, in registration (= book) order."""
    chapters: dict[str, list[Exercise]] = {}
    for exercise in REGISTRY.values():
        chapters.setdefault(exercise.chapter, []).append(exercise)
    return chapters

