"""Convert the slides notebook into a reveal.js deck that works without a network.

nbconvert's reveal template loads reveal.js, RequireJS, jQuery and MathJax from CDNs, so a deck
built offline is one long page. ``reveal_offline.html.j2`` loads them from files next to the deck
instead: reveal.js from the ``sphinx-revealjs`` wheel (reveal.js 5.2.0; pinned in
requirements-dev.txt) and MathJax 3 from ``django-static-mathjax``, as the site itself does.

``python book/_ext/offline_slides.py NOTEBOOK OUT_DIR`` writes ``OUT_DIR/index.html`` and the two
libraries beside it (``make book`` runs it on the executed notebook).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nbformat
from nbconvert import SlidesExporter

TEMPLATE = Path(__file__).with_name("reveal_offline.html.j2")
REVEAL_DIR = "reveal.js"  # beside index.html


def reveal_source() -> Path:
    import sphinx_revealjs  # the sphinx-revealjs distribution carries reveal.js's dist/ and plugin/

    return Path(sphinx_revealjs.__file__).parent / "_static" / "revealjs"


def mathjax_source() -> Path:
    import mathjax  # the django-static-mathjax distribution's package

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5" / "tex-svg-full.js"


def deck_html(notebook: nbformat.NotebookNode) -> str:
    """The deck's HTML (code cells left out), loading reveal.js and MathJax from relative paths."""
    html, _ = SlidesExporter(template_file=str(TEMPLATE), reveal_url_prefix=REVEAL_DIR, exclude_input=True).from_notebook_node(notebook)
    return html


def write_deck(notebook_path: Path, out_dir: Path) -> Path:
    """``out_dir/index.html`` plus ``reveal.js/`` and ``mathjax/`` beside it; the page is written to a temporary name, then renamed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("dist", "plugin"):
        shutil.copytree(reveal_source() / name, out_dir / REVEAL_DIR / name, dirs_exist_ok=True)
    (out_dir / "mathjax").mkdir(exist_ok=True)
    shutil.copy2(mathjax_source(), out_dir / "mathjax" / "tex-svg-full.js")
    page = out_dir / "index.html"
    partial = page.with_suffix(".html.partial")
    partial.write_text(deck_html(nbformat.read(notebook_path, as_version=4)))
    os.replace(partial, page)
    return page


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python book/_ext/offline_slides.py NOTEBOOK OUT_DIR")
    print(write_deck(Path(sys.argv[1]), Path(sys.argv[2])))
