"""course_lib.deploy.benchmark: stage timing, latency statistics, the results file, the Pareto front, the CLI."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from course_lib import environment, zoo
from course_lib.cli import bench as bench_cli
from course_lib.deploy import benchmark, eager
from course_lib.utils import timing
from course_lib.engine import step_benchmark
from course_lib.results import pareto_front, results_table, save_results


@pytest.fixture(scope="module")
def model(untrained_toycity_model):
    return untrained_toycity_model


@pytest.fixture(scope="module")
def dataset():
    return benchmark.toycity_val(1)


def test_stage_timer_accounts_for_the_forward_and_leaves_no_trace(model, dataset):
    image = dataset[0][0]
    with torch.inference_mode():
        model([image])
        start = time.perf_counter()
        with timing.stage_timer(model) as stages:
            model([image])
        total = time.perf_counter() - start
    assert list(stages) == list(timing.STAGES) and all(seconds > 0 for seconds in stages.values())
    assert 0.5 * total < sum(stages.values()) <= total  # the stages are most of the forward, never more
    assert "postprocess" not in model.transform.__dict__ and "postprocess_detections" not in model.roi_heads.__dict__
    assert not model.backbone._forward_hooks and not model.backbone._forward_pre_hooks


def test_run_benchmark_reports_every_field_and_skips_what_the_device_cannot_run(model, dataset, tmp_path):
    results = benchmark.run_benchmark(model, dataset, ["baseline", "det_20", "fp16"], warmup=1, repeats=2, stage_repeats=1,
                                  progress=None)
    assert results["skipped"] == {"fp16": eager.get("fp16").supported(torch.device("cpu"))}
    names = [row["name"] for row in results["variants"]]
    assert names == ["baseline", "det_20"]
    row = results["variants"][1]
    assert row["p90_ms"] >= row["median_ms"] > 0 and row["fps"] == pytest.approx(1000 / row["median_ms"])
    assert set(row["stages_ms"]) == set(timing.STAGES)
    assert 0 <= row["mask_AP"] <= 1 and row["speedup"] == pytest.approx(row["paired_baseline_ms"] / row["median_ms"])
    assert results["input_size"] == [128, 256] and results["torch"] == torch.__version__
    path = save_results(results, tmp_path / "r.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(results))
    table = results_table(results).splitlines()
    assert len(table) == 2 + 2 and table[2].startswith("| baseline |")


def test_pareto_front_keeps_only_unbeaten_variants():
    rows = [
        {"name": "slow_good", "median_ms": 100, "mask_AP": 0.5},
        {"name": "fast_bad", "median_ms": 10, "mask_AP": 0.2},
        {"name": "dominated", "median_ms": 120, "mask_AP": 0.4},
        {"name": "middle", "median_ms": 40, "mask_AP": 0.45},
    ]
    assert pareto_front({"variants": rows}) == ["fast_bad", "middle", "slow_good"]


def test_pareto_front_equals_the_dominance_definition_with_ties():
    """Generated rows with tied latencies and tied APs: the front is every row no other row beats on both."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 9))
        rows = [{"name": f"v{i}", "median_ms": float(ms), "mask_AP": float(ap)}
                for i, (ms, ap) in enumerate(zip(rng.integers(1, 4, n), rng.integers(0, 3, n) / 10))]
        beaten = {r["name"] for r in rows for o in rows
                  if o["median_ms"] <= r["median_ms"] and o["mask_AP"] >= r["mask_AP"]
                  and (o["median_ms"], o["mask_AP"]) != (r["median_ms"], r["mask_AP"])}
        front = pareto_front({"variants": rows})
        assert not beaten & set(front), rows
        kept = {(r["median_ms"], r["mask_AP"]) for r in rows if r["name"] in front}
        assert kept == {(r["median_ms"], r["mask_AP"]) for r in rows if r["name"] not in beaten}, rows


def test_cli_times_without_evaluation(model, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(zoo, "from_command_line", lambda *args, **kwargs: model)
    out = tmp_path / "benchmark.json"
    argv = ["--variants", "baseline,rpn_100", "--val", "1", "--warmup", "1", "--repeats", "2", "--no-eval", "--force-loaded", "--out", str(out)]  # a test, not a timing to keep
    assert bench_cli.cli(argv) == 0
    printed = capsys.readouterr().out
    assert "[results from]" in printed and "| rpn_100 |" in printed
    recorded = json.loads(out.read_text())
    assert [row["name"] for row in recorded["variants"]] == ["baseline", "rpn_100"]
    assert recorded["settings"] == {"variants": "baseline,rpn_100", "calibration": environment.pick(2, 64), "val": 1, "size": [128, 256],
                                    "warmup": 1, "repeats": 2, "threads": None, "batch_size": 4}  # given, else the defaults of --help


def test_training_step_benchmark_times_each_pooler_and_leaves_the_model_alone(model, monkeypatch, tmp_path, capsys):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    monkeypatch.setattr(zoo, "from_command_line", lambda *args, **kwargs: model)
    out = tmp_path / "train_step.json"
    threads = torch.get_num_threads()
    try:  # 2 threads: the data-parallel variant runs 2 processes of 1 thread
        assert bench_cli.cli(["--train-step", "--warmup", "1", "--repeats", "2", "--size", "64x128", "--threads", "2", "--force-loaded", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    results = json.loads(out.read_text())
    assert [row["name"] for row in results["variants"]] == list(step_benchmark.TRAIN_STEP_VARIANTS)
    assert all(row["median_ms"] > 0 and row["images_per_s"] > 0 for row in results["variants"])
    assert results["variants"][0]["speedup"] == 1.0
    assert "| separable_amp |" in capsys.readouterr().out
    # the steps trained copies: the caller's model, and its separable pooler, are untouched
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert type(model.roi_heads.box_roi_pool).__name__ == "SeparableMultiScaleRoIAlign"


def test_tracker_overhead_records_what_it_measured():
    result = benchmark.tracker_overhead(num_objects=5, num_frames=6, height=64, width=128)
    assert result["frame_size"] == [64, 128] and result["update_ms"] > 0 and result["paste_ms"] > 0
    assert result["command"].startswith("python -m course_lib bench --tracker") and result["device"].startswith("cpu")
    assert result["torch"] == torch.__version__ and result["date"][:2] == "20"
