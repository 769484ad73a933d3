"""Notebook hygiene: the toc and the files agree, notebooks are committed clean, each starts with the Colab guard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
COLAB_GUARD = '"google.colab" in sys.modules'


def toc_files(entries) -> list[str]:
    files = []
    for entry in entries:
        if "file" in entry:
            files.append(entry["file"])
        for key in ("chapters", "sections", "parts"):
            files += toc_files(entry.get(key, []))
    return files


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + toc_files(toc.get("parts", []) + toc.get("chapters", []))


def test_every_toc_entry_exists_and_every_notebook_is_listed():
    pages = toc_pages()
    missing = [p for p in pages if not any((ROOT / f"{p}{ext}").exists() for ext in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml lists pages that do not exist: {missing}"
    listed = {str(nb.relative_to(ROOT).with_suffix("")) for nb in NOTEBOOKS}
    unlisted = sorted(listed - set(pages))
    assert not unlisted, f"notebooks missing from _toc.yml: {unlisted}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_outputs_are_stripped(notebook):
    result = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", str(notebook)], capture_output=True)
    assert result.returncode == 0, f"run: nbstripout {notebook.relative_to(ROOT)}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_first_code_cell_is_the_colab_guard(notebook):
    cells = [c for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]
    assert cells, "a chapter notebook has code"
    first = cells[0].source
    assert COLAB_GUARD in first and "pip" in first and "install" in first, (
        "the first code cell must install course_lib only on Colab"
    )


@pytest.mark.parametrize("notebook", [p for p in NOTEBOOKS if p.with_suffix(".py").exists()],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_py_percent_twin_is_in_sync(notebook):
    def cells(nb):
        return [(c.cell_type, c.source.strip()) for c in nb.cells]

    assert cells(jupytext.read(notebook)) == cells(jupytext.read(notebook.with_suffix(".py"))), (
        f"run: jupytext --to ipynb {notebook.with_suffix('.py').relative_to(ROOT)} && nbstripout {notebook.relative_to(ROOT)}"
    )
