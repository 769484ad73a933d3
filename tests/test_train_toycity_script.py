"""data_scripts/train_toycity.py: a tiny run writes weights whose manifest rebuilds the model, the
eval command and compare_toycity_runs.py read them, and bad splits stop early."""

import json

import pytest

from course_lib import zoo
from course_lib.data.toycity import HELD_OUT_SEED
from course_lib.utils.download import file_digest
from course_lib.zoo import registry

TINY = ["--steps", "2", "--batch-size", "2", "--warmup", "1", "--height", "64", "--width", "128", "--val-length", "2",
        "--eval-every", "2", "--threads", "1", "--no-install"]


@pytest.fixture(scope="module")
def cli(data_script_main):
    return data_script_main("train_toycity")


@pytest.fixture(scope="module")
def tiny_run(cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_run")
    assert cli([*TINY, "--mask-head-channels", "64", "--repeat-threshold", "0.5", "--out", str(out)]) == 0
    return out


def test_a_tiny_run_writes_weights_that_its_manifest_rebuilds(tiny_run):
    manifest = json.loads((tiny_run / "toycity_maskrcnn.json").read_text())
    weights = tiny_run / manifest["file"]
    assert manifest["sha256"] == file_digest(weights)
    assert manifest["command"].startswith("python data_scripts/train_toycity.py --steps 2")
    assert manifest["build_kwargs"]["mask_head_channels"] == 64
    # the learner's route to their own weights: checks the sha256, builds from the manifest, loads strictly
    model = zoo.load("checkpoint", device="cpu", source=str(weights), sha256=manifest["sha256"], arch=manifest["arch"],
                     **manifest["build_kwargs"])
    assert model.roi_heads.mask_predictor.mask_fcn_logits.in_channels == 32
    results = json.loads((tiny_run / "toycity_training.json").read_text())
    assert [point["step"] for point in results["curve"]] == [2]
    assert results["final"]["segm"]["AP"] == manifest["metrics"]["segm_AP"]
    assert results["training"]["repeat_threshold"] == 0.5 and results["training"]["cpu"].startswith("cpu: ")


def test_the_eval_command_reads_a_runs_weights_through_its_manifest(tiny_run, tmp_path):
    from course_lib.cli import evaluate

    results = json.loads((tiny_run / "toycity_training.json").read_text())
    # the same 2 held-out scenes the run evaluated (course_lib.data.toycity.held_out: both commands' default)
    assert evaluate.cli(["--data", "toycity", "--length", "2", "--height", "64", "--width", "128",
                         "--model", str(tiny_run / "toycity_maskrcnn.pt"), "--json", str(tmp_path / "eval.json")]) == 0
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert metrics["segm"]["AP"] == pytest.approx(results["final"]["segm"]["AP"], abs=0.01)


def test_compare_runs_evaluates_each_run_on_each_split(tiny_run, tmp_path, data_script_main, capsys):
    compare = data_script_main("compare_toycity_runs")
    out = tmp_path / "table.json"
    assert compare([f"tiny={tiny_run}", "--length", "2", "--data-seeds", str(HELD_OUT_SEED), "7", "--threads", "1", "--out", str(out)]) == 0
    table = json.loads(out.read_text())
    (row,) = table["runs"]
    assert row["run"] == "tiny" and sorted(row["splits"]) == sorted([str(HELD_OUT_SEED), "7"])
    # its first split is the run's own held-out split, evaluated again
    assert row["splits"][str(HELD_OUT_SEED)]["segm_AP"] == pytest.approx(row["training_split_segm_AP"], abs=0.01)
    assert row["mean_segm_AP"] == pytest.approx((row["splits"][str(HELD_OUT_SEED)]["segm_AP"] + row["splits"]["7"]["segm_AP"]) / 2)
    assert "tiny" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="missing .*toycity_maskrcnn.pt"):
        compare([f"empty={tmp_path}"])


def test_a_batch_that_does_not_split_over_the_processes_stops_before_training(tmp_path, cli, capsys):
    with pytest.raises(SystemExit):
        cli([*TINY, "--batch-size", "3", "--processes", "2", "--out", str(tmp_path)])
    assert "--batch-size 3 must be a multiple of --processes 2" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def parsed_options(monkeypatch, command) -> dict:
    """The options ``command`` (a ``main``/``cli`` call) would train with, caught before training starts."""
    from course_lib.engine import distributed

    caught = {}
    monkeypatch.setattr(distributed, "launch", lambda fn, args, *rest, **kwargs: caught.update(vars(args)))
    assert command() == 0
    return caught


def test_the_script_and_the_train_command_share_the_toycity_recipe(cli, monkeypatch, tmp_path):
    from course_lib.cli import train
    from course_lib.engine import recipes

    script = parsed_options(monkeypatch, lambda: cli(["--out", str(tmp_path / "script")]))
    command = parsed_options(monkeypatch, lambda: train.cli(["--recipe", "toycity", "--data", "toycity", "--out", str(tmp_path / "cli")]))
    recipe = recipes.RECIPES["toycity"]
    assert {key: script[key] for key in recipe} == {key: command[key] for key in recipe} == recipe
    finetune = parsed_options(monkeypatch, lambda: train.cli(["--data", "toycity", "--steps", "3", "--out", str(tmp_path / "ft")]))
    assert (finetune["optimizer"], finetune["lr"]) == (recipes.RECIPES["finetune"]["optimizer"], recipes.RECIPES["finetune"]["lr"])


def test_the_recorded_command_of_the_shipped_model_parses_to_its_recorded_recipe(cli, monkeypatch, tmp_path):
    manifest = registry.toycity_manifest()
    prefix = "python data_scripts/train_toycity.py "
    assert manifest["command"].startswith(prefix)
    options = parsed_options(monkeypatch, lambda: cli([*manifest["command"][len(prefix):].split(), "--out", str(tmp_path)]))
    recorded = manifest["training"]
    for key in ("steps", "batch_size", "optimizer", "lr", "weight_decay", "warmup_steps", "schedule", "grad_clip", "repeat_threshold", "seed"):
        assert options[key] == recorded[key], key
