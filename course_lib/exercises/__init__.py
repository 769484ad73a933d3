"""Checked exercises: a learner writes a small function, :func:`check` runs it on hand-picked and generated cases.

Each :class:`Exercise` holds the reference solution (kept here, out of the notebooks), the
hand-picked cases, the generated ones (``generated``: edge cases, then seeded random cases), the
field's implementation the expected values come from (``expected``), and the bank of typical
mistakes written as functions, each with the hint it earns. :func:`check`

* prints a "not attempted yet" line when the learner's function is still a stub (it raises
  ``NotImplementedError`` or returns ``None`` on every case, as a body of ``...`` does), so a
  notebook of stubs runs end to end;
* raises :class:`ExerciseFailed` (an ``AssertionError``) naming the first failing case (its input,
  the expected value and the value obtained, the None returned or the exception raised) and a
  hint: the one of the bank's mistake that explains every failing case, else the general hint;
* prints one ``✓`` line when every case agrees.

:func:`case` returns a case's input to reproduce it; :func:`solution` prints a reference solution;
:func:`exercises_page` writes the book's list of them. The exercises live in one module per part
of the course (``foundations``, ``detection``, ``heads``, ``training``, ``speed``, ``realtime``).
"""

from course_lib.exercises.core import (REGISTRY, Exercise, ExerciseFailed, Mistake, PAGE_INTRO, by_chapter, case, check, count_cases,
                                       exercises_page, register, same, solution)
from course_lib.exercises import foundations
from course_lib.exercises import detection
from course_lib.exercises import heads
from course_lib.exercises import training
from course_lib.exercises import speed
from course_lib.exercises import realtime
