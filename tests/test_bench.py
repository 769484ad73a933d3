"""course_lib.deploy.benchmark (the one harness), stage timing, the results file and its committed format, the Pareto
front, the CLI."""

from __future__ import annotations

import json
import os
import time
import types

import numpy as np
import pytest
import torch

from course_lib import environment, zoo
from course_lib.cli import bench as bench_cli
from course_lib.cli import main
from course_lib.deploy import benchmark, eager
from course_lib.engine import step_benchmark
from course_lib.errors import BadInput
from course_lib.modeling import stage_timing
from course_lib.results import load_results, pareto_front, results_table, save_results


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
        with stage_timing.stage_timer(model) as stages:
            model([image])
        total = time.perf_counter() - start
    assert list(stages) == list(stage_timing.STAGES) and all(seconds > 0 for seconds in stages.values())
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
    assert set(row["stages_ms"]) == set(stage_timing.STAGES)
    assert 0 <= row["mask_AP"] <= 1 and row["speedup_of_medians"] == pytest.approx(row["paired_baseline_ms"] / row["median_ms"])
    assert row["n"] == 2 and row["detections_per_image"] <= 20 and results["variants"][0]["mask_AP_drop"] == 0
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
    assert result["update_p90_ms"] >= result["update_ms"] and result["device"].startswith("cpu")
    assert result["torch"] == torch.__version__ and result["date"][:2] == "20"


def test_a_batched_variant_is_timed_per_image_beside_the_baseline(model, dataset):
    results = benchmark.run_benchmark(model, dataset * 4, ["batch_4"], warmup=0, repeats=2, stage_repeats=0,
                                      evaluate=False, progress=None)
    baseline, batched = results["variants"]
    assert batched["batch_size"] == 4 and batched["median_ms"] > 0 and "stages_ms" not in batched
    assert baseline["name"] == "baseline" and baseline["speedup"] == 1.0


def test_the_harness_writes_every_field_of_the_committed_eager_benchmark(model, monkeypatch, tmp_path):
    """bench_cpu.json was written by an earlier harness: the one kept writes every field it has (chapters, the README
    table and the exercises read them), at the top and in each variant's row."""
    monkeypatch.setattr(zoo, "from_command_line", lambda *args, **kwargs: model)
    out = tmp_path / "bench.json"
    argv = ["--variants", "baseline,det_20", "--val", "1", "--warmup", "0", "--repeats", "1", "--force-loaded", "--out", str(out)]
    assert bench_cli.cli(argv) == 0  # a test of the format, not a timing to keep
    written, committed = json.loads(out.read_text()), load_results("bench_cpu.json")
    added_by_hand = {"command_source"}  # the committed run did not record its command; a note says so
    assert set(committed) - added_by_hand <= set(written), set(committed) - set(written)
    for row in written["variants"]:
        assert set(committed["variants"][0]) <= set(row), set(committed["variants"][0]) - set(row)
    assert written["timing"] == benchmark.TIMING and written["cores"] == (os.cpu_count() or 1)


@pytest.mark.parametrize("variants, wrong", [("baseline,fp8", "fp8"), ("ort@fast_bf16", "ort@fast_bf16")])
def test_an_unknown_or_impossible_variant_is_one_line_before_any_timing(variants, wrong, monkeypatch, capsys):
    monkeypatch.setattr(zoo, "from_command_line", lambda *args, **kwargs: pytest.fail("no model is loaded"))
    with pytest.raises(BadInput, match=wrong):
        bench_cli.cli(["--variants", variants])


def test_runtimes_without_their_packages_say_what_to_install(monkeypatch, capsys):
    monkeypatch.setattr(bench_cli, "deploy_available", lambda: False)
    monkeypatch.setattr(zoo, "from_command_line", lambda *args, **kwargs: pytest.fail("no model is loaded"))
    with pytest.raises(BadInput):  # the library's error, which the CLI prints in one line (exit 2)
        bench_cli.cli(["--variants", "baseline,ort"])
    assert main(["bench", "--variants", "baseline,ort"]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "pip install 'course_lib[deploy]'" in message


def test_options_are_not_changed_after_parsing(monkeypatch):
    """``--model random:ARCH`` times only; that is decided from the options, not written back into them."""
    seen = []
    parse = bench_cli.options.ArgumentParser.parse_args

    def recording(self, *args, **kwargs):
        parsed = parse(self, *args, **kwargs)
        seen.append((parsed, dict(vars(parsed))))
        return parsed

    monkeypatch.setattr(bench_cli.options.ArgumentParser, "parse_args", recording)
    monkeypatch.setattr(benchmark, "run_benchmark", lambda *args, **kwargs: {"variants": [], "skipped": {}})
    monkeypatch.setattr(bench_cli, "results_table", lambda table: "")
    monkeypatch.setattr(benchmark, "random_weights_model", lambda *args: types.SimpleNamespace(
        to=lambda device: types.SimpleNamespace(roi_heads=types.SimpleNamespace(detections_per_img=20))))
    assert bench_cli.cli(["--model", "random:r50_fpn_v2", "--variants", "baseline", "--val", "1"]) == 0
    (parsed, as_parsed), = seen
    assert vars(parsed) == as_parsed
