"""The book builds with 0 Sphinx warnings (without executing notebooks: nbval executes them)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    # local_extensions paths are resolved against the config file's folder, which is now `out`
    config["sphinx"]["local_extensions"] = {
        name: str(ROOT / path) for name, path in config["sphinx"]["local_extensions"].items()
    }
    config["bibtex_bibfiles"] = [str(ROOT / path) for path in config["bibtex_bibfiles"]]
    (out / "_config.yml").write_text(yaml.safe_dump(config))
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", "-W", "-n", "--keep-going", str(ROOT),
         "--config", str(out / "_config.yml"), "--path-output", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    log = result.stdout + result.stderr
    return out / "_build" / "html", result.returncode, log


def test_book_builds_without_warnings(built_site):
    html, returncode, log = built_site
    warnings = [line for line in log.splitlines() if "WARNING" in line and "Kernel is running over TCP" not in line]
    assert returncode == 0 and not warnings, "\n".join(warnings) or log[-3000:]
    assert (html / "index.html").exists() and (html / ".nojekyll").exists()


def test_setup_chapter_has_a_colab_link(built_site):
    html, _, _ = built_site
    page = (html / "book" / "00_setup.html").read_text()
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    colab = repo.replace("https://github.com/", "https://colab.research.google.com/github/")
    assert f"{colab}/blob/main/book/00_setup.ipynb" in page


def test_math_is_served_from_the_site_not_a_cdn(built_site):
    html, _, _ = built_site
    page = (html / "book" / "intro.html").read_text()
    scripts = re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', page, flags=re.I)
    assert scripts and all(not s.startswith("http") for s in scripts), scripts
    assert (html / "_static" / "mathjax" / "tex-svg-full.js").stat().st_size > 1_000_000
