"""data_scripts/make_toycity.py: each export format lands where its reader looks, and --bench reports images/s."""

import json

import pytest
from pycocotools.coco import COCO

from course_lib.data.cityscapes import CityscapesInstances

TINY = ["--height", "96", "--width", "192", "--count", "2"]


@pytest.fixture(scope="module")
def cli(data_script_main):
    return data_script_main("make_toycity")


def test_coco_and_cityscapes_exports_open_in_their_readers(tmp_path, cli):
    assert cli(["--format", "coco", "--split", "val", "--out", str(tmp_path / "coco"), *TINY]) == 0
    assert len(COCO(str(tmp_path / "coco" / "annotations" / "instances_val.json")).getImgIds()) == 2
    assert cli(["--format", "cityscapes", "--split", "val", "--out", str(tmp_path / "cs"), *TINY]) == 0
    assert len(CityscapesInstances(tmp_path / "cs", split="val")) == 2


def test_mots_export_writes_motschallenge_sequences(tmp_path, cli):
    assert cli(["--format", "mots", "--frames", "3", "--out", str(tmp_path), *TINY]) == 0
    sequence = tmp_path / "train" / "toycity-02"
    assert sorted(p.name for p in (sequence / "img1").iterdir()) == ["000001.png", "000002.png", "000003.png"]
    assert "seqLength=3" in (sequence / "seqinfo.ini").read_text()
    assert {line.split()[0] for line in (sequence / "gt" / "gt.txt").read_text().splitlines()} <= {"1", "2", "3"}


def test_bench_prints_and_writes_images_per_second(tmp_path, cli, capsys):
    assert cli(["--bench", "--json", str(tmp_path / "bench.json"), *TINY]) == 0
    assert "scenes/s" in capsys.readouterr().out
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["scene_images_per_s"] > 0 and written["device"].startswith("cpu") and written["date"][:2] == "20"


def test_export_or_bench_must_be_chosen(cli):
    with pytest.raises(SystemExit):
        cli(["--count", "2"])
