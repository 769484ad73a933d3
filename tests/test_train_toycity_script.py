"""data_scripts/train_toycity.py: a tiny run writes weights whose manifest rebuilds the model, and bad splits stop early."""

import json

import pytest

from course_lib import zoo

TINY = ["--steps", "2", "--batch-size", "2", "--warmup", "1", "--height", "64", "--width", "128", "--val-length", "2",
        "--eval-every", "2", "--threads", "1", "--no-install"]


@pytest.fixture(scope="module")
def cli(data_script_main):
    return data_script_main("train_toycity")


def test_a_tiny_run_writes_weights_that_its_manifest_rebuilds(tmp_path, cli):
    assert cli([*TINY, "--mask-head-channels", "64", "--out", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "toycity_maskrcnn.json").read_text())
    weights = tmp_path / manifest["file"]
    assert manifest["sha256"] == zoo.sha256_of(weights)
    assert manifest["command"].startswith("python data_scripts/train_toycity.py --steps 2")
    assert manifest["build_kwargs"]["mask_head_channels"] == 64
    # the learner's route to their own weights: checks the sha256, builds from the manifest, loads strictly
    model = zoo.load("checkpoint", device="cpu", source=str(weights), sha256=manifest["sha256"], arch=manifest["arch"],
                     **manifest["build_kwargs"])
    assert model.roi_heads.mask_predictor.mask_fcn_logits.in_channels == 32
    results = json.loads((tmp_path / "toycity_training.json").read_text())
    assert [point["step"] for point in results["curve"]] == [2]
    assert results["final"]["segm"]["AP"] == manifest["metrics"]["segm_AP"]


def test_a_batch_that_does_not_split_over_the_processes_stops_before_training(tmp_path, cli, capsys):
    with pytest.raises(SystemExit):
        cli([*TINY, "--batch-size", "3", "--processes", "2", "--out", str(tmp_path)])
    assert "--batch-size 3 must be a multiple of --processes 2" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
