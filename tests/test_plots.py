"""course_lib.tables.figures draws the committed results files; course_lib.report turns them into tables."""

from __future__ import annotations

import re

import pytest
from matplotlib.figure import Figure

from course_lib import results
from course_lib.modeling.stage_timing import STAGES
from course_lib.report import figures, tables


@pytest.fixture(scope="module")
def shipped() -> dict:
    return results.load_results("toycity_training.json")


def test_training_figures_have_a_line_per_metric(shipped):
    fig = figures.training_curve(shipped, results.load_results("toycity_training_2x.json"))
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert all(len(ax.lines) == 3 + 1 + 1 for ax in fig.axes)  # three metrics, the longer run, the bar
    fig = figures.training_curve_and_loss(shipped, window=10)
    assert len(fig.axes[1].lines) == 2 and len(fig.axes[1].lines[0].get_xdata()) == len(shipped["loss"])


def test_decay_comparison_draws_every_run():
    runs = {name: results.load_results(name) for name in tables.SEED_AND_SCHEDULE_RUNS}
    fig = figures.decay_comparison(runs)
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == len(runs) + 1  # runs plus the bar


def test_speed_and_tracker_figures():
    speed_run = results.load_results("bench_cpu.json")
    fig = figures.speed_and_stages(speed_run)
    assert len(fig.axes[1].patches) == len(speed_run["variants"]) * len(STAGES)
    assert len(figures.pareto(speed_run).axes) == 1
    assert [label.get_text() for label in fig.axes[1].get_yticklabels()] == [row["name"] for row in speed_run["variants"]]
    tracker = results.load_results("tracker_cpu.json")
    widths = sorted(p.get_width() for p in figures.tracker_cost(tracker).axes[0].patches)
    assert widths == sorted([tracker["update_ms"], tracker["paste_ms"]])


def test_levers_table_has_a_row_per_recorded_lever_with_its_source():
    levers = results.load_results(tables.LEVERS)
    rows = tables.levers_table().splitlines()[2:]
    assert len(rows) == len(levers["levers"])
    for lever, row in zip(levers["levers"], rows):
        assert re.fullmatch(r"[0-9a-f]{40}", lever["source_commit"]), lever["name"]
        assert f"{lever['segm_AP']:.3f}" in row and lever["source_commit"][:7] in row
    assert len({lever["name"] for lever in levers["levers"]}) == len(levers["levers"]), "lever names are unique"


def test_runs_table_has_a_row_per_run():
    runs = results.load_results("toycity_runs_500.json")["runs"]
    rows = tables.runs_500_table().splitlines()[2:]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == [run["run"] for run in runs]
