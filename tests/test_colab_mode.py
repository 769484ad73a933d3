"""Colab mode: the README's real-data commands, run at tiny scale on format-faithful stand-ins.

A learner on Colab has torchvision's COCO weights, often Cityscapes, COCO images and a video of
their own. Here the COCO weights are a COCO-format state dict in a torch hub cache, Cityscapes is
ToyCity in the Cityscapes layout (``CITYSCAPES_DATASET``), COCO is ToyCity as COCO JSON
(tests/standins.py). The results mean nothing; that every path runs, and reads and writes the real
formats, is what is tested.
"""

from __future__ import annotations

import json

import pytest
import torch

from course_lib.classes import CLASSES
from course_lib.cli import main

TINY_TRAIN = ["--steps", "1", "--batch-size", "2", "--warmup", "1", "--checkpoint-every", "1"]


@pytest.fixture
def cityscapes(cityscapes_standin, monkeypatch):
    monkeypatch.setenv("CITYSCAPES_DATASET", str(cityscapes_standin))
    return cityscapes_standin


def test_cityscapes_standin_has_the_real_layout(cityscapes):
    from standins import cityscapes_ids

    from course_lib import environment
    from course_lib.data.cityscapes import CityscapesInstances

    assert environment.cityscapes_root() == cityscapes
    ids = cityscapes_ids(cityscapes, "val")
    assert (ids >= 1000).any(), "instances: label id * 1000 + k"
    groups = [v for v in ids if 24 <= v <= 33]
    assert groups, "group regions keep the plain label id of a thing class"
    assert 29 * 1000 in ids, "a caravan instance, a class the official evaluation ignores"
    val = CityscapesInstances(split="val", crowd=True)
    _, target = val[0]
    assert target["iscrowd"].sum() > 0 and set(target["labels"].tolist()) <= set(range(1, len(CLASSES)))


def test_train_on_cityscapes_then_official_eval(cityscapes, tmp_path, capsys):
    out = tmp_path / "cs"
    assert main(["train", "--data", "cityscapes", "--out", str(out), *TINY_TRAIN]) == 0
    assert "cityscapes train (2 images)" in capsys.readouterr().out
    metrics_file = tmp_path / "eval.json"
    assert main(["eval", "--data", "cityscapes", "--model", str(out / "last.pt"), "--arch", "toycity_small",
                 "--official", str(tmp_path / "official"), "--json", str(metrics_file)]) == 0
    printed = capsys.readouterr().out
    assert "Cityscapes official: AP" in printed
    official = json.loads(metrics_file.read_text())["cityscapes_official"]
    assert set(official["per_class"]) == set(CLASSES[1:])
    assert list((tmp_path / "official").glob("*_pred.txt")), "the evaluator's input files are written"


def test_train_on_coco_json(coco_data_standin, tmp_path, capsys):
    out = tmp_path / "coco"
    assert main(["train", "--data", "coco", "--root", str(coco_data_standin), "--out", str(out), *TINY_TRAIN]) == 0
    assert "coco train (2 images)" in capsys.readouterr().out
    assert (out / "model.pt").is_file()


def test_fine_tune_from_coco_weights(coco_weights, cityscapes, tmp_path):
    """`train --arch r50_fpn --weights DEFAULT`: torchvision's own weights API reads the cached file."""
    out = tmp_path / "r50"
    assert main(["train", "--data", "cityscapes", "--arch", "r50_fpn", "--weights", "DEFAULT",
                 "--min-size", "128", "--max-size", "256", "--out", str(out), *TINY_TRAIN]) == 0
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["roi_heads.box_predictor.cls_score.weight"].shape[0] == len(CLASSES)
    history = json.loads((out / "history.json").read_text())
    assert torch.isfinite(torch.tensor(history["loss"][0]["loss"]))


def test_video_with_coco_weights(coco_weights, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    assert main(["video", "--toycity", str(clip), "--frames", "2"]) == 0
    out = tmp_path / "out.gif"
    assert main(["video", str(clip), str(out), "--model", "coco", "--track", "--max-frames", "2"]) == 0
    assert out.is_file() and "coco model" in capsys.readouterr().out



def test_week1_subject_is_the_street_photo_where_there_is_no_cityscapes(coco_weights, tmp_path, monkeypatch):
    """COCO weights without Cityscapes: the Week 1 chapters open the model on the cached street photo."""
    import cv2

    from course_lib.zoo import subjects
    from course_lib.data.toycity import scene
    from course_lib.zoo import files

    home = tmp_path / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    (home / "hub" / "checkpoints" / coco_weights.name).symlink_to(coco_weights)
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("CITYSCAPES_DATASET", raising=False)
    photo = files.weights_dir().parent / "course_images" / "FudanPed00054.png"  # where the download lands
    photo.parent.mkdir(parents=True)
    cv2.imwrite(str(photo), scene(5, 96, 160)[0][:, :, ::-1])

    subject = subjects.chapter_subject()
    assert subject.model_name.startswith("COCO") and subject.data_name.startswith("street photo")
    assert subject.image.shape == (3, 96, 160) and 0 <= float(subject.image.min()) <= float(subject.image.max()) <= 1
