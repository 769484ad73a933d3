"""Every digit in a chapter's prose is a result printed by code, or a listed constant.

``course_lib.utils.provenance`` finds the digits of each markdown cell that no rule exempts (math, code,
years, citations, headings, names such as ResNet-50, square grids); ``book/digits_allowed.yml``
lists, per chapter, the phrases whose digits are constants, quotes or published numbers. Anything
else is a typed number: compute it in a code cell, or read it from a committed results file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from course_lib.utils.provenance import markdown_cells, typed_numbers

ROOT = Path(__file__).resolve().parents[1]
ALLOWLIST = ROOT / "book" / "digits_allowed.yml"
CATEGORIES = {"constant", "roadmap", "published", "exercise"}
CHAPTERS = sorted([p for p in (ROOT / "book").rglob("*.py") if "_ext" not in p.parts] + list((ROOT / "book").glob("*.md")))


def allowed() -> dict[str, list[dict]]:
    return yaml.safe_load(ALLOWLIST.read_text()) or {}


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_prose_has_no_typed_numbers(chapter):
    name = str(chapter.relative_to(ROOT))
    phrases = [entry["text"] for entry in allowed().get(name, [])]
    typed = typed_numbers(chapter, phrases, root=ROOT)
    assert not typed, (
        f"{len(typed)} number(s) in the prose of {name} that no code produced:\n"
        + "\n".join(f"  line {t.line}: {t.number!r} in: {t.text.strip()}" for t in typed)
        + "\nPrint the number from a code cell (computed on the page, or read from a committed results file"
          " under course_lib/assets/results/), or reword without it. Only a constant, the roadmap's quoted claim,"
          f" a published number with its source, or an exercise parameter may be listed in {ALLOWLIST.relative_to(ROOT)}."
    )


def test_allowlist_entries_are_explained_and_still_present():
    problems = []
    for name, entries in allowed().items():
        path = ROOT / name
        if not path.exists():
            problems.append(f"{name}: no such chapter")
            continue
        prose = "\n".join(text for _, text in markdown_cells(path))
        for entry in entries:
            if entry.get("why") not in CATEGORIES:
                problems.append(f"{name}: {entry['text']!r} needs why: one of {sorted(CATEGORIES)}")
            if entry["text"] not in prose:
                problems.append(f"{name}: {entry['text']!r} no longer occurs in the prose: remove it from the list")
    assert not problems, "\n".join(problems)


def test_rules_flag_results_and_spare_constants(tmp_path):
    chapter = tmp_path / "chapter.py"
    chapter.write_text(
        "# %% [markdown]\n"
        "# ## 3. Mask AP after ResNet-50 training (He et al., 2017)\n"
        "# The mask head predicts $28 \\times 28$ maps, 14 × 14 RoIs; see `--steps 1650` and Week 2.\n"
        "# It reached mask AP 0.42 after 9.5 minutes, a 46 x 22 anchor.\n"
        "# %%\n"
        "print(0.42)\n"
    )
    typed = typed_numbers(chapter)
    assert [t.number for t in typed] == ["0.42", "9.5", "46", "22"]
    assert {t.line for t in typed} == {4}
    assert typed_numbers(chapter, ["mask AP 0.42 after 9.5 minutes, a 46 x 22"]) == []
