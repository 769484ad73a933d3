"""Chapters time with course_lib.utils.timing (warm-up, device synchronisation, median), never with a clock by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(path for path in BOOK.rglob("*.py") if path.with_suffix(".ipynb").exists())  # jupytext pairs
HAND_CLOCK = re.compile(r"\btime\.(perf_counter|monotonic|process_time|time)\b|\bfrom time import\b")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: str(p.relative_to(BOOK)))
def test_chapter_reads_no_clock_by_hand(chapter):
    lines = [f"{n}: {line.strip()}" for n, line in enumerate(chapter.read_text().splitlines(), 1) if HAND_CLOCK.search(line)]
    assert not lines, "time with course_lib.utils.timing (Stopwatch, repeat, interleaved, summary):\n" + "\n".join(lines)


def test_the_check_sees_a_hand_loop():
    assert HAND_CLOCK.search("start = time.perf_counter()") and HAND_CLOCK.search("from time import perf_counter")
    assert not HAND_CLOCK.search("with timing.Stopwatch(device) as clock:")
