"""Checked exercises: a learner writes a small function, :func:`check` runs it on generated cases.

Each :class:`Exercise` holds the reference solution (kept here, out of the notebooks), the cases,
and the typical mistakes written as functions, each with the hint it earns. :func:`check`

* prints a "not attempted yet" line when the learner's function is still a stub (it raises
  ``NotImplementedError`` or returns ``None``, as a body of ``...`` does), so a notebook of stubs
  runs end to end;
* raises :class:`ExerciseFailed` (an ``AssertionError``) naming the input, the expected value, the
  value obtained and a hint; the hint is the one of the recorded mistake that gives the same
  wrong value, else the exercise's general hint;
* prints one ``✓`` line when every case agrees.

:func:`solution` prints a reference solution; :func:`exercises_page` writes the book's list of them.
The exercises live in one module per part of the course (``foundations``, ``training``, ``realtime``).
"""

from course_lib.exercises.core import REGISTRY, Exercise, ExerciseFailed, Mistake, PAGE_INTRO, by_chapter, check, exercises_page, register, same, solution
from course_lib.exercises import foundations
from course_lib.exercises import heads
from course_lib.exercises import training
from course_lib.exercises import realtime
