"""The book builds with 0 Sphinx warnings (executing only the chapters with an explorable: nbval executes them all)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_book_builds_without_warnings(built_site):
    warnings = [line for line in built_site.log.splitlines()
                if "WARNING" in line and "Kernel is running over TCP" not in line]
    assert built_site.returncode == 0 and not warnings, "\n".join(warnings) or built_site.log[-3000:]
    assert (built_site.html / "index.html").exists() and (built_site.html / ".nojekyll").exists()


def test_setup_chapter_has_a_colab_link(built_site):
    page = (built_site.html / "book" / "00_setup.html").read_text()
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    colab = repo.replace("https://github.com/", "https://colab.research.google.com/github/")
    assert f"{colab}/blob/main/book/00_setup.ipynb" in page


def test_math_is_served_from_the_site_not_a_cdn(built_site):
    html = built_site.html
    page = (html / "book" / "intro.html").read_text()
    scripts = re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', page, flags=re.I)
    assert scripts and all(not s.startswith("http") for s in scripts), scripts
    assert (html / "_static" / "mathjax" / "tex-svg-full.js").stat().st_size > 1_000_000


def chapter_notebooks() -> list[Path]:
    toc = (ROOT / "_toc.yml").read_text()
    return [ROOT / f"{page}.ipynb" for page in re.findall(r"file: (\S+)", toc) if (ROOT / f"{page}.ipynb").exists()]


def test_each_chapter_starts_with_the_colab_install_cell_removed_from_the_site():
    import json

    notebooks = chapter_notebooks()
    assert len(notebooks) >= 20, notebooks
    for notebook in notebooks:
        first = next(cell for cell in json.loads(notebook.read_text())["cells"] if cell["cell_type"] == "code")
        assert "google.colab" in "".join(first["source"]), f"{notebook.name}: the first code cell is not the Colab install cell"
        assert "remove-cell" in first["metadata"].get("tags", []), f"{notebook.name}: the install cell would show on the site"


def test_no_page_shows_the_install_cell(built_site):
    for notebook in chapter_notebooks():
        page = built_site.html / notebook.relative_to(ROOT).with_suffix(".html")
        assert "google.colab" not in page.read_text(), f"{page.name} shows the Colab install cell"


def test_explorable_pages_stay_light(built_site):
    from conftest import explorable_chapters

    for chapter in explorable_chapters():
        page = (built_site.html / chapter.relative_to(ROOT).with_suffix(".html")).read_text()
        views = re.findall(r'src="data:image/webp;base64,([^"]*)"', page)
        assert views, f"{chapter.name}: the explorables' views are not on the page"
        weight = sum(len(view) for view in views)
        assert weight < 3_000_000, f"{chapter.name}: the explorables add {weight / 1e6:.1f} MB to the page"


def test_the_folders_make_writes_are_not_pages():
    """make test puts a whole venv (the floor set) under .cache/: its packages' .md files would become
    pages, each a warning, if the book root did not exclude it as it excludes .venv and _build."""
    excluded = set(yaml.safe_load((ROOT / "_config.yml").read_text())["exclude_patterns"])
    makefile = (ROOT / "Makefile").read_text()
    written = {folder for folder in (".venv", ".cache", "_build") if folder in makefile}
    assert written == {".venv", ".cache", "_build"} and written <= excluded
