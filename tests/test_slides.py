"""The slide deck: book/week4/05_slides.ipynb, executed, converts into a reveal.js deck with one section per slide.

``make book`` runs the same conversion on the notebook Jupyter Book executed (see the Makefile).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import SlidesExporter

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "book" / "week4" / "05_slides.ipynb"


def slide_type(cell) -> str:
    return cell.metadata.get("slideshow", {}).get("slide_type", "-")


@pytest.fixture(scope="module")
def executed() -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return notebook


@pytest.fixture(scope="module")
def deck(executed) -> str:
    html, _ = SlidesExporter(exclude_input=True).from_notebook_node(executed)
    return html


def test_the_deck_has_one_section_per_slide(executed, deck):
    slides = [c for c in executed.cells if slide_type(c) == "slide"]
    subslides = [c for c in executed.cells if slide_type(c) == "subslide"]
    assert 8 <= len(slides) <= 12, f"{len(slides)} slides: the deck should stay short"
    # nbconvert's reveal template: a <section> per slide holding a <section> per (sub)slide in it.
    assert deck.count("<section") == 2 * len(slides) + len(subslides)


def test_every_figure_is_in_the_deck_and_no_code_is(executed, deck):
    figures = sum("image/png" in output.get("data", {}) for cell in executed.cells if cell.cell_type == "code"
                  for output in cell.outputs)
    assert figures >= 6, f"only {figures} figures: a slide lost its plot"
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', deck)) == figures
    assert "import course_lib" not in deck and "from course_lib" not in deck, "code cells leaked into the deck"


def test_skipped_cells_stay_out(executed, deck):
    # Lines of plain words survive the markdown conversion unchanged, so their absence means something.
    plain = [line for cell in executed.cells if slide_type(cell) == "skip" and cell.cell_type == "markdown"
             for line in cell.source.splitlines() if re.fullmatch(r"[A-Za-z ,.;:()'-]{30,}", line)]
    assert plain, "the deck's notes cell (slide_type skip) is gone"
    assert not [line for line in plain if line in deck]
