"""data_scripts/make_toycity.py: each export format lands where its reader looks, and --bench reports images/s."""

import json
import os

import pytest
from pycocotools.coco import COCO

from course_lib import results
from course_lib.data.cityscapes import CityscapesInstances

TINY = ["--height", "96", "--width", "192", "--count", "2"]
CORES = os.cpu_count() or 1


@pytest.fixture(scope="module")
def cli(data_script_main):
    return data_script_main("make_toycity")


@pytest.fixture
def loads(monkeypatch):
    """``loads(before, after)``: the 1-minute load averages ``os.getloadavg()`` returns, one call after the other."""
    def set_loads(*values: float) -> None:
        sequence = iter(values)
        monkeypatch.setattr(os, "getloadavg", lambda: (next(sequence), 0.0, 0.0))
    return set_loads


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


def test_bench_prints_and_writes_images_per_second(tmp_path, cli, capsys, loads):
    loads(0.0, 0.0)
    assert cli(["--bench", "--json", str(tmp_path / "bench.json"), *TINY]) == 0
    assert "scenes/s" in capsys.readouterr().out
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["scene_images_per_s"] == pytest.approx(1 / written["scene_seconds_each"])
    assert written["scene_p90_seconds"] >= written["scene_seconds_each"] > 0
    assert written["device"].startswith("cpu") and written["date"][:2] == "20"
    assert written["load_average_1min"] == {"before": 0.0, "after": 0.0} and written["cores"] == CORES
    assert written["command"].endswith("--bench --json " + str(tmp_path / "bench.json") + " " + " ".join(TINY))


def test_bench_times_the_scenes_it_is_told_after_one_warm_up(tmp_path, data_script, loads):
    script, seeds = data_script("make_toycity"), []
    draw = script.scene
    script.scene = lambda seed, *size, **options: seeds.append(seed) or draw(seed, *size, **options)
    loads(0.0, 0.0)
    assert script.main(["--bench", "--seed", "7", *TINY]) == 0
    assert seeds == [7, 8, 9]  # warm-up on the first seed, then --count timed ones


@pytest.mark.parametrize("before, after", [(CORES + 0.01, 0.0), (0.0, CORES + 0.01)])
def test_bench_on_a_busy_machine_prints_but_writes_nothing(tmp_path, cli, capsys, loads, before, after):
    out = tmp_path / "bench.json"
    out.write_text("the previous results")
    loads(before, after)
    assert cli(["--bench", "--json", str(out), *TINY]) == 2
    printed = capsys.readouterr()
    assert "scenes/s" in printed.out
    assert len(printed.err.strip().splitlines()) == 1 and "--force-loaded" in printed.err
    assert out.read_text() == "the previous results"  # nothing the user had is lost
    loads(before, after)
    assert cli(["--bench", *TINY]) == 0, "without --json nothing is written, so nothing is refused"


def test_bench_forced_under_load_writes_and_says_so(tmp_path, cli, loads):
    loads(CORES + 1.0, CORES + 2.0)
    assert cli(["--bench", "--force-loaded", "--json", str(tmp_path / "bench.json"), *TINY]) == 0
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["forced_under_load"] is True
    assert results.load_text(written) == (f"load average {CORES + 1.0:.2f} before, {CORES + 2.0:.2f} after, on {CORES} cores"
                                          " (written under load with --force-loaded)")


def test_week4_reads_the_committed_file_and_a_new_one_alike(tmp_path, cli, loads):
    """Week 4's ToyCity cell reads these fields, from the committed file as from a new one."""
    loads(0.5, 0.75)
    assert cli(["--bench", "--json", str(tmp_path / "bench.json"), *TINY]) == 0
    committed, new = results.load_results("toycity_speed.json"), json.loads((tmp_path / "bench.json").read_text())
    read = ("size", "command", "device", "omp_num_threads", "scene_images_per_s", "scene_seconds_each",
            "scene_cpu_seconds_each", "clip_frames_per_s")
    for written in (committed, new):
        assert all(key in written for key in read)
    assert results.load_text(new) == f"load average 0.50 before, 0.75 after, on {CORES} cores"
    before, after = committed["load_average_1min"]["before"], committed["load_average_1min"]["after"]
    assert results.load_text(committed) == f"load average {before:.2f} before, {after:.2f} after, on {committed['cores']} cores"
    assert max(before, after) <= committed["cores"] and not committed["forced_under_load"], "a committed timing is a quiet one"


def test_export_or_bench_must_be_chosen(cli):
    with pytest.raises(SystemExit):
        cli(["--count", "2"])
