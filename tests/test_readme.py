"""The README's results table is the one the committed results files produce (course_lib.report)."""

from pathlib import Path

from course_lib.report import tables

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"


def test_readme_results_come_from_the_committed_files():
    readme = (ROOT / "README.md").read_text()
    assert START in readme and END in readme, "the README marks its generated results table"
    committed = readme.split(START, 1)[1].split(END, 1)[0].strip()
    assert committed == tables.readme_results(), "regenerate it: python -m course_lib.report"


def test_every_results_file_is_named_in_the_table():
    table = tables.readme_results()
    missing = [name for name in tables.results_files() if name not in table]
    assert not missing, f"results files the README does not cite: {missing}"
