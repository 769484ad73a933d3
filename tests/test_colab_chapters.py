"""Colab mode, chapters: every chapter with a COCO-weights or Cityscapes branch, executed once on the
stand-ins of tests/standins.py (a module of its own, so that ``pytest -n 2 --dist loadscope`` runs
these notebooks and the Colab-mode command lines on two workers).

Chapters without such a branch run in the ToyCity mode only (nbval over ``book/``): a chapter that
gains one belongs in :data:`REAL_MODE_CHAPTERS`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


#: Chapter -> a line its outputs hold only when it took the COCO-weights / Cityscapes branch.
REAL_MODE_CHAPTERS = {
    "book/00_setup.ipynb": "COCO-pretrained Mask R-CNN : cached",
    **{f"book/week1/{name}.ipynb": "Cityscapes val image" for name in (
        "01_feature_maps", "02_anchors", "03_rpn_and_nms", "04_roi_align", "05_heads_and_masks", "06_misconceptions")},
    "book/week1/07_baseline_metrics.ipynb": "Cityscapes val (official evaluator)",
    "book/week2/02_data_and_augmentation.ipynb": "Cityscapes val, first image",
    "book/week3/04_video_demo.ipynb": "model: COCO-pretrained",
}


#: Calls by which a chapter chooses COCO weights, Cityscapes or a real video when they are there.
REAL_DATA_CALLS = ("course_model(", "chapter_subject(", "cityscapes_root(", 'available("coco")', "sample_video(")


def test_every_chapter_with_a_real_data_branch_is_run_here():
    chapters = sorted(ROOT.glob("book/**/*.py"))
    branching = {str(p.relative_to(ROOT).with_suffix(".ipynb")) for p in chapters
                 if p.with_suffix(".ipynb").exists() and any(call in p.read_text() for call in REAL_DATA_CALLS)}
    assert branching == set(REAL_MODE_CHAPTERS), f"add to / remove from REAL_MODE_CHAPTERS: {branching ^ set(REAL_MODE_CHAPTERS)}"


def run_notebook(path, cwd, timeout: int = 600) -> str:
    """Execute a chapter in a fresh kernel (environment inherited) after a cell that trusts the
    stand-in COCO file's sha256; return all its text outputs."""
    import nbformat
    from nbclient import NotebookClient
    from standins import TRUST_COCO_CELL

    # the book build's one-second polls for cell replies: after an ipywidget cell a single long wait
    # can miss the reply and sleep until the timeout (jupyter/nbclient#312, book/_ext/nbclient_poll.py)
    spec = importlib.util.spec_from_file_location("nbclient_poll", ROOT / "book/_ext/nbclient_poll.py")
    nbclient_poll = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nbclient_poll)
    nbclient_poll.setup(None)
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(TRUST_COCO_CELL))
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") or "".join(output.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


def check_real_data_branch(chapter, cityscapes_standin, tmp_path, monkeypatch) -> None:
    from course_lib.tracking.video_io import sample_video

    if chapter.endswith("04_video_demo.ipynb") and sample_video() is None:
        pytest.skip("the video chapter's real street needs vtest.avi: run `make vtest` (apt-get download opencv-doc)")
    monkeypatch.setenv("CITYSCAPES_DATASET", str(cityscapes_standin))
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    outputs = run_notebook(ROOT / chapter, tmp_path)
    assert REAL_MODE_CHAPTERS[chapter] in outputs, f"{chapter} did not take its COCO / Cityscapes branch"


# Two classes: `pytest -n 2 --dist loadscope` gives each class to one worker, so the chapters run on both.
WEEK1 = sorted(c for c in REAL_MODE_CHAPTERS if "/week1/" in c)


class TestChaptersA:
    @pytest.mark.parametrize("chapter", WEEK1[::2])
    def test_takes_its_real_data_branch(self, chapter, coco_weights, cityscapes_standin, tmp_path, monkeypatch):
        check_real_data_branch(chapter, cityscapes_standin, tmp_path, monkeypatch)


class TestChaptersB:
    @pytest.mark.parametrize("chapter", sorted(set(REAL_MODE_CHAPTERS) - set(WEEK1[::2])))
    def test_takes_its_real_data_branch(self, chapter, coco_weights, cityscapes_standin, tmp_path, monkeypatch):
        check_real_data_branch(chapter, cityscapes_standin, tmp_path, monkeypatch)
