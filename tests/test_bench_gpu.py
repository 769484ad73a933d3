"""data_scripts/bench_gpu.py runs anywhere: a CPU smoke run of the GPU benchmark writes its table's JSON."""

from __future__ import annotations

import json
import os

from course_lib.results import load_results


def test_cpu_smoke_run_times_what_the_cpu_can_run_and_says_why_not_the_rest(data_script_main, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    main = data_script_main("bench_gpu")
    argv = ["--device", "cpu", "--size", "64", "--warmup", "1", "--repeats", "2", "--force-loaded", "--out", str(out)]
    assert main(argv) == 0  # a smoke run, not a timing to keep
    results = json.loads(out.read_text())
    assert [row["name"] for row in results["variants"]] == ["fp32", "channels_last"]
    assert set(results["skipped"]) == {"tf32", "fp16_autocast", "fp16_half", "channels_last_fp16", "compile_fp16"}
    assert all(row["median_ms"] > 0 and row["p90_ms"] >= row["median_ms"] for row in results["variants"])
    assert results["device"].startswith("cpu") and "random weights" in results["what"]
    assert all(row["n"] == 2 and row["warmup_s"] > 0 for row in results["variants"]) and "load_average_1min" in results
    committed = load_results("deploy_gpu.json")  # every field of the committed GPU file is written again, except
    only_on_a_gpu = {"cuda", "cudnn", "gpu_driver", "gpu_memory_mib", "host_cpu", "p90_note"}  # GPU facts and notes
    assert set(committed) - only_on_a_gpu <= set(results) and set(committed["variants"][0]) <= set(results["variants"][0])
    assert "| fp32 |" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["gpu.json"]  # no partial file left
    assert main(["--device", "cpu", "--variants", "fp8", "--out", str(out)]) == 2
    assert main(["--device", "cpu", "--variants", "tf32", "--out", str(out)]) == 2  # nothing the CPU can run
    assert "tf32: needs a CUDA GPU" in capsys.readouterr().err


def test_a_busy_machine_writes_nothing(data_script_main, tmp_path, monkeypatch, capsys):
    out = tmp_path / "gpu.json"
    out.write_text("the previous results")
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0 * (os.cpu_count() or 1) + 1, 0.0, 0.0))
    main = data_script_main("bench_gpu")
    assert main(["--device", "cpu", "--size", "64", "--warmup", "0", "--repeats", "1", "--variants", "fp32", "--out", str(out)]) == 2
    assert "--force-loaded" in capsys.readouterr().err and out.read_text() == "the previous results"
