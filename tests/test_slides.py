"""The slide deck: book/week4/05_slides.ipynb, executed, converts into a reveal.js deck with one section per slide.

``make book`` runs the same conversion (``book/_ext/offline_slides.py``) on the notebook Jupyter Book
executed; the deck loads reveal.js and MathJax from files beside it, never from a network.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "book" / "week4" / "05_slides.ipynb"
_spec = importlib.util.spec_from_file_location("offline_slides", ROOT / "book" / "_ext" / "offline_slides.py")
offline_slides = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(offline_slides)


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
    return offline_slides.deck_html(executed)


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


def test_the_deck_loads_its_scripts_from_files_beside_it(tmp_path):
    page = offline_slides.write_deck(NOTEBOOK, tmp_path / "slides")
    html = page.read_text()
    assets = re.findall(r'<script[^>]*\ssrc="([^"]+)"', html) + re.findall(r'<link[^>]*\shref="([^"]+)"', html)
    assert any(a.endswith("dist/reveal.js") for a in assets) and any("mathjax" in a for a in assets), assets
    remote = [a for a in assets if "//" in a]
    assert not remote, f"the deck loads from the network: {remote}"
    missing = [a for a in assets if not (page.parent / a).is_file()]
    assert not missing, f"the deck refers to files that were not copied beside it: {missing}"
