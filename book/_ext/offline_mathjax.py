"""Sphinx extension: serve MathJax 3 from the built site instead of a CDN, so math renders offline.

The MathJax files come from the ``django-static-mathjax`` wheel (MathJax 3.2.2, no Django needed).
``tex-svg-full.js`` is one self-contained file: TeX input, SVG output, every TeX extension.
"""

from __future__ import annotations

import shutil
from pathlib import Path

MATHJAX_FILE = "tex-svg-full.js"


def _source() -> Path:
    import mathjax  # the django-static-mathjax distribution's package

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5" / MATHJAX_FILE


def _use_local_mathjax(app, config) -> None:
    config.mathjax_path = f"mathjax/{MATHJAX_FILE}"  # relative to _static


def _copy_mathjax(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        target = Path(app.outdir) / "_static" / "mathjax"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(_source(), target / MATHJAX_FILE)


def setup(app):
    _source()  # fail at start-up, not at the end, if the MathJax package is missing
    app.connect("config-inited", _use_local_mathjax, priority=900)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
