"""data_scripts/bench_gpu.py runs anywhere: a CPU smoke run of the GPU benchmark writes its table's JSON."""

from __future__ import annotations

import json


def test_cpu_smoke_run_times_what_the_cpu_can_run_and_says_why_not_the_rest(data_script_main, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    main = data_script_main("bench_gpu")
    assert main(["--device", "cpu", "--size", "64", "--warmup", "1", "--repeats", "2", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [row["name"] for row in results["variants"]] == ["fp32", "channels_last"]
    assert set(results["skipped"]) == {"tf32", "fp16_autocast", "fp16_half", "channels_last_fp16", "compile_fp16"}
    assert all(row["median_ms"] > 0 and row["p90_ms"] >= row["median_ms"] for row in results["variants"])
    assert results["device"].startswith("cpu") and "random weights" in results["what"]
    assert "| fp32 |" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["gpu.json"]  # no partial file left
    assert main(["--device", "cpu", "--variants", "fp8", "--out", str(out)]) == 2
