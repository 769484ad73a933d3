"""course_lib.utils.timing: the one summary against numpy and statistics on generated timings, the interleaved rounds,
the synchronising clock, the machine record; course_lib.environment.cpu_info on real and hostile /proc/cpuinfo files."""

from __future__ import annotations

import os
import platform
import statistics

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import environment
from course_lib.errors import MachineBusy
from course_lib.utils import timing

READ_CPU_INFO = environment.cpu_info  # the parser itself, before a test replaces it with a fake machine's
SECONDS = st.floats(min_value=1e-6, max_value=10.0, allow_nan=False, allow_infinity=False)


@settings(derandomize=True, max_examples=300)
@given(st.one_of(st.lists(SECONDS, min_size=1, max_size=60),  # any timings, unsorted
                 st.lists(st.sampled_from([0.01, 0.02, 0.03]), min_size=1, max_size=30)))  # many ties
def test_summary_is_numpys_median_and_linear_p90_in_any_order(seconds):
    got = timing.summary(seconds)
    assert got.n == len(seconds)
    assert got.median == pytest.approx(np.median(seconds), rel=1e-12)
    assert got.median == pytest.approx(statistics.median(seconds), rel=1e-12)  # an implementation that is not numpy's
    assert got.p90 == pytest.approx(np.percentile(seconds, 90, method="linear"), rel=1e-12)
    assert got.mean == pytest.approx(np.mean(seconds), rel=1e-12)
    if len(seconds) >= 2:  # statistics' 'inclusive' deciles are numpy's linear percentiles
        assert got.p90 == pytest.approx(statistics.quantiles(seconds, n=10, method="inclusive")[8], rel=1e-9)
    assert min(seconds) <= got.median <= got.p90 <= max(seconds)
    assert timing.summary(sorted(seconds)) == timing.summary(seconds[::-1]) == got


@given(SECONDS)
def test_one_timing_is_its_own_summary_and_row(value):
    assert timing.summary([value]) == timing.Summary(value, value, value, 1)
    row = timing.summary([value]).row()
    assert row["median_ms"] == row["p90_ms"] == row["mean_ms"] == 1e3 * value and row["fps"] == pytest.approx(1 / value)


def test_no_timing_has_no_summary():
    with pytest.raises(ValueError, match="at least one"):
        timing.summary([])


@settings(derandomize=True)
@given(st.lists(st.tuples(SECONDS, SECONDS), min_size=1, max_size=40))
def test_paired_speedup_is_the_median_of_the_ratios(pairs):
    reference, seconds = zip(*pairs)
    assert timing.paired_speedup(reference, seconds) == pytest.approx(statistics.median(r / s for r, s in pairs), rel=1e-12)


def test_interleaved_calls_everyone_once_a_round_in_a_rotating_order():
    order = []
    calls = {name: (lambda index, name=name: order.append((index, name)) or f"{name}{index}") for name in "abc"}
    rounds = timing.interleaved(calls, torch.device("cpu"), warmup=2, repeats=4)
    per_round = [[name for index, name in order if index == i] for i in range(6)]
    assert per_round == [list("abc"), list("bca"), list("cab"), list("abc"), list("bca"), list("cab")]
    assert {name: len(s) for name, s in rounds.seconds.items()} == {"a": 4, "b": 4, "c": 4}
    assert rounds.outputs["b"] == ["b2", "b3", "b4", "b5"]  # the warm-up rounds' outputs are not kept
    assert all(rounds.warmup_s[name] > 0 for name in "abc")
    assert len(timing.repeat(lambda index: None, torch.device("cpu"), warmup=0, repeats=3)) == 3
    assert timing.interleaved({}, torch.device("cpu")).seconds == {}  # nothing to time: no rounds, no error


def test_the_stopwatch_waits_for_the_device_before_and_after(monkeypatch):
    events = []
    monkeypatch.setattr(timing, "synchronize", lambda device: events.append(("sync", device.type)))
    with timing.Stopwatch(torch.device("cuda")) as clock:
        events.append("work")
    assert events == [("sync", "cuda"), "work", ("sync", "cuda")] and clock.seconds >= 0


X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8

processor\t: 1
model name\t: another name the first block wins over
flags\t\t: fpu
"""
ARM = """processor\t: 0
BogoMIPS\t: 48.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 bf16

Hardware\t: some board
"""


@pytest.mark.parametrize("text, model, has_bf16", [
    (X86, "Intel(R) Xeon(R) Platinum 8480+", True),
    (X86.replace(" avx512_bf16 amx_tile amx_bf16 amx_int8", ""), "Intel(R) Xeon(R) Platinum 8480+", False),
    ("", None, False),  # an empty file: no flags, the platform's name
    ("flags : avx2\nmodel name:\n", None, False),  # no name given
])
def test_cpu_info_reads_the_first_processor(tmp_path, monkeypatch, text, model, has_bf16):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    info = environment.cpu_info(str(path))
    assert info.model == (model or platform.processor() or platform.machine())
    assert ("avx2" in info.flags) == ("avx2" in text.split("\n\n")[0])
    monkeypatch.setattr(environment, "cpu_info", lambda: info)
    assert environment.cpu_has_bf16_units() is has_bf16


def test_cpu_info_reads_arm_features_and_is_none_without_the_file(tmp_path, monkeypatch):
    path = tmp_path / "cpuinfo"
    path.write_text(ARM)
    assert "asimd" in environment.cpu_info(str(path)).flags
    assert environment.cpu_info(str(tmp_path / "absent")) is None
    monkeypatch.setattr(environment, "cpu_info", lambda: None)
    assert environment.cpu_has_bf16_units() is None


def test_the_machine_record_names_the_inference_flags_and_checks_the_load_only_for_a_writer(tmp_path, monkeypatch):
    path = tmp_path / "cpuinfo"
    path.write_text(X86)
    monkeypatch.setattr(environment, "cpu_info", lambda: READ_CPU_INFO(str(path)))
    record = timing.machine_record(torch.device("cpu"))
    assert record["cpu_features"] == sorted({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"})
    assert record["cpu"] == record["device"] == f"cpu: Intel(R) Xeon(R) Platinum 8480+ ({os.cpu_count()} logical cores)"
    assert record["cpu_bf16_units"] is True and record["threads"] == torch.get_num_threads()
    assert record["versions"]["torch"] and record["torch"] == torch.__version__ and record["date"][:2] == "20"
    assert "load_average_1min" not in record
    cores = os.cpu_count() or 1
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 1.0, 0.0, 0.0))
    with pytest.raises(MachineBusy):
        timing.machine_record(torch.device("cpu"), load_before=0.0)
    forced = timing.machine_record(torch.device("cpu"), load_before=0.0, force=True)
    assert forced["forced_under_load"] is True and forced["load_average_1min"] == {"before": 0.0, "after": cores + 1.0}
