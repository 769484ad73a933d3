"""The benchmark refuses to write timings taken on a busy machine (load above the core count)."""

from __future__ import annotations

import json
import os

import pytest

from course_lib.cli import bench as bench_cli
from course_lib.cli import main
from course_lib.deploy import benchmark
from course_lib.utils import timing
from course_lib.errors import MachineBusy

CORES = os.cpu_count() or 1


@pytest.fixture
def fake_tracker_timing(monkeypatch):
    """``bench --tracker`` without timing anything: what is checked is the writing."""
    monkeypatch.setattr(benchmark, "tracker_overhead", lambda: {"update_ms": 1.0})


def loads(monkeypatch, *values: float) -> None:
    """``os.getloadavg()`` returns these 1-minute loads, one call after the other."""
    sequence = iter(values)
    monkeypatch.setattr(os, "getloadavg", lambda: (next(sequence), 0.0, 0.0))


@pytest.mark.parametrize("before, after", [(CORES + 0.01, 0.0), (0.0, CORES + 0.01), (3.0 * CORES, 3.0 * CORES)])
def test_a_busy_machine_writes_nothing_and_says_so_in_one_line(tmp_path, monkeypatch, capsys, fake_tracker_timing, before, after):
    out = tmp_path / "tracker.json"
    out.write_text("the previous results")
    loads(monkeypatch, before, after)
    assert main(["bench", "--tracker", "--out", str(out)]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "--force-loaded" in message and f"{CORES} cores" in message
    assert out.read_text() == "the previous results"  # nothing the user had is lost


@pytest.mark.parametrize("before, after", [(0.0, 0.0), (CORES, CORES)])  # at the core count: every process has a core
def test_a_quiet_machine_records_its_load(tmp_path, monkeypatch, fake_tracker_timing, before, after):
    out = tmp_path / "tracker.json"
    loads(monkeypatch, before, after)
    assert bench_cli.cli(["--tracker", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["load_average_1min"] == {"before": before, "after": after}
    assert written["cores"] == CORES and written["forced_under_load"] is False and written["update_ms"] == 1.0


def test_forcing_writes_and_records_that_it_was_forced(tmp_path, monkeypatch, fake_tracker_timing):
    out = tmp_path / "tracker.json"
    loads(monkeypatch, 2.0 * CORES + 1, 2.0 * CORES + 1)
    assert bench_cli.cli(["--tracker", "--force-loaded", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["forced_under_load"] is True and written["load_average_1min"]["after"] == 2.0 * CORES + 1


def test_printing_only_never_refuses(monkeypatch, fake_tracker_timing):
    loads(monkeypatch, 10.0 * CORES, 10.0 * CORES)
    assert bench_cli.cli(["--tracker"]) == 0


def test_checked_load_is_a_user_error():
    with pytest.raises(MachineBusy):
        timing.checked_load(CORES + 1.0)


def test_the_file_records_its_command(tmp_path, monkeypatch, fake_tracker_timing):
    out = tmp_path / "tracker.json"
    loads(monkeypatch, 0.0, 0.0)
    monkeypatch.setattr("sys.argv", ["python -m course_lib", "bench", "--tracker", "--out", str(out)])
    assert main(["bench", "--tracker", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["command"].startswith("python -m course_lib bench")


def test_forcing_on_a_quiet_machine_is_not_recorded_as_forced_under_load(monkeypatch):
    loads(monkeypatch, 0.0)
    assert timing.checked_load(0.0, force=True)["forced_under_load"] is False
