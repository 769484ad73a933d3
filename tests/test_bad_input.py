"""Bad input and faults, as a hostile-but-fair user meets them: each gets one ``error: ...`` line
(exit code 2) or the right result, and no input or earlier output is changed or lost.

Every case runs through ``python -m course_lib`` (in-process, ``course_lib.cli.main``) or
the public API; a "disk full" fault writes part of a file and then fails, as a full disk does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.error
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from course_lib import results, zoo
from course_lib.cli import main
from course_lib.data import coco_urban, images
from course_lib.errors import BadInput
from course_lib.evaluation import coco_eval
from course_lib.tracking import pipeline, video_io
from course_lib.utils import atomic
from course_lib.utils.download import file_digest

TOYCITY = ["--data", "toycity", "--height", "64", "--width", "128"]
TRAIN = ["train", *TOYCITY, "--length", "4", "--steps", "1", "--batch-size", "2", "--warmup", "1", "--amp", "off",
         "--min-size", "64", "--max-size", "128"]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path: equal snapshots mean nothing changed."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(capsys) -> str:
    """The single ``error:`` line the command printed (progress bars may share stderr)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def write_frames(folder: Path, frames: list[np.ndarray], suffix: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:04d}{suffix}" for i in range(len(frames))]
    for path, frame in zip(paths, frames):
        cv2.imwrite(str(path), frame)
    return paths


def frames_of(height: int = 64, width: int = 128, count: int = 3) -> list[np.ndarray]:
    return [np.full((height, width, 3), 40 * (i + 1), np.uint8) for i in range(count)]


@pytest.fixture
def small_model(monkeypatch, untrained_toycity_model):
    """The commands with an untrained ToyCity-sized model: tests the plumbing, not the detections."""
    monkeypatch.setattr(zoo, "from_command_line", lambda *args, **kwargs: untrained_toycity_model)
    return untrained_toycity_model


@pytest.fixture
def disk_full(monkeypatch):
    """``disk_full(name)``: from then on, text, bytes and ``torch.save`` writes to a file whose name
    contains ``name`` write a few bytes and fail with "No space left on device", as a full disk does."""
    def arm(name: str) -> None:
        def failing(write, target_of):
            def wrapper(*args, **kwargs):
                target = target_of(args)
                if not isinstance(target, (str, os.PathLike)) or name not in Path(target).name:
                    return write(*args, **kwargs)
                with open(target, "wb") as f:
                    f.write(b"partial")
                raise OSError(28, "No space left on device")
            return wrapper

        monkeypatch.setattr(Path, "write_text", failing(Path.write_text, lambda args: args[0]))
        monkeypatch.setattr(Path, "write_bytes", failing(Path.write_bytes, lambda args: args[0]))
        monkeypatch.setattr(torch, "save", failing(torch.save, lambda args: args[1]))
    return arm


# --------------------------------------------------------------------------- lost data


def test_video_refuses_to_write_over_its_input(tmp_path, small_model, capsys):
    clip, _ = video_io.write_toycity_clip(tmp_path / "clip.mp4", num_frames=3, height=64, width=128)
    before = snapshot(tmp_path)
    for same in (str(clip), str(tmp_path / "." / "clip.mp4")):
        assert main(["video", str(clip), same]) == 2
        assert "is also this command's input" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


def test_train_refuses_an_existing_run_without_resume(finished_run, tmp_path, capsys):
    run = shutil.copytree(finished_run, tmp_path / "run")
    before = snapshot(run)
    assert main([*TRAIN, "--out", str(run)]) == 2
    assert "--resume" in one_error_line(capsys)
    assert snapshot(run) == before


def test_train_toycity_refuses_an_existing_run_without_resume(finished_run, tmp_path, data_script_main, capsys):
    run = shutil.copytree(finished_run, tmp_path / "run")
    before = snapshot(run)
    with pytest.raises(SystemExit) as stop:
        data_script_main("train_toycity")(["--steps", "1", "--no-install", "--out", str(run)])
    assert stop.value.code == 2 and "--resume" in capsys.readouterr().err.splitlines()[-1]
    assert snapshot(run) == before


# --------------------------------------------------------------------------- integrity


def test_zoo_load_needs_at_least_8_hex_digits_of_the_sha256(tmp_path):
    from course_lib.modeling.maskrcnn import build

    path = tmp_path / "mine.pt"
    torch.save(build("toycity_small").state_dict(), path)
    full = file_digest(path)
    for digest in ("", full[:1], full[:7], "not-hex!"):  # each would have matched, or loaded any file
        with pytest.raises(BadInput, match="at least its first 8"):
            zoo.load("checkpoint", source=str(path), sha256=digest, arch="toycity_small")
    assert zoo.load("checkpoint", source=str(path), sha256=full[:8], arch="toycity_small", device="cpu") is not None


# --------------------------------------------------------------------------- silent wrong results


def test_a_truncated_jpeg_frame_is_an_error_not_a_grey_frame(tmp_path, small_model, capsys):
    noise = [np.random.default_rng(i).integers(0, 255, (64, 128, 3), np.uint8) for i in range(3)]
    paths = write_frames(tmp_path / "frames", noise, suffix=".jpg")
    paths[1].write_bytes(paths[1].read_bytes()[:len(paths[1].read_bytes()) // 2])
    before = snapshot(tmp_path)
    assert main(["video", str(tmp_path / "frames"), str(tmp_path / "out.mp4")]) == 2
    assert "0001.jpg: this JPEG is cut short" in one_error_line(capsys)
    assert snapshot(tmp_path) == before  # and no out.mp4


def test_a_truncated_image_in_a_dataset_is_an_error(tmp_path):
    cv2.imwrite(str(tmp_path / "cut.jpg"), np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "cut.jpg").read_bytes()[:600])
    with pytest.raises(BadInput, match="cut.jpg: cannot read this image"):
        images.read_rgb(tmp_path / "cut.jpg")


def test_a_16_bit_greyscale_png_keeps_its_grey_levels(tmp_path):
    grey = (np.arange(32 * 64).reshape(32, 64) * 30).astype(np.uint16)  # 0 .. 61410
    cv2.imwrite(str(tmp_path / "grey16.png"), grey)
    image = images.read_rgb(tmp_path / "grey16.png")
    assert image.shape == (3, 32, 64)
    expected = torch.from_numpy(grey.astype(np.float32) / 65535)
    for channel in image:
        torch.testing.assert_close(channel.as_subclass(torch.Tensor), expected)


def test_frames_of_another_size_are_an_error_not_dropped(tmp_path, small_model, capsys):
    write_frames(tmp_path / "frames", frames_of(count=2) + frames_of(height=72, count=1))
    assert main(["video", str(tmp_path / "frames"), str(tmp_path / "out.mp4")]) == 2
    assert "0002.png is 128x72 pixels but 0000.png is 128x64" in one_error_line(capsys)
    assert not (tmp_path / "out.mp4").exists()


def coco_folder(root: Path, extra: list[dict]) -> Path:
    """A COCO-format folder: one 64x64 image with a 20x20 car polygon, plus ``extra`` annotations."""
    (root / "val2017").mkdir(parents=True)
    cv2.imwrite(str(root / "val2017" / "000000000001.jpg"), np.full((64, 64, 3), 90, np.uint8))
    car = {"id": 1, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 400.0, "bbox": [10, 10, 20, 20],
           "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]]}
    annotations = [car] + [{"id": 2 + i, "image_id": 1, "iscrowd": 0, **a} for i, a in enumerate(extra)]
    instances = {"images": [{"id": 1, "file_name": "000000000001.jpg", "height": 64, "width": 64}],
                 "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}], "annotations": annotations}
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(instances))
    return root


@pytest.mark.parametrize("degenerate", [
    {"category_id": 3, "area": 0.0, "bbox": [40, 40, 0, 0], "segmentation": [[40, 40, 40, 40, 40, 40]]},
    {"category_id": 3, "area": 0.0, "bbox": [40, 40, 10, 10], "segmentation": [[40, 40, 45, 45, 50, 50]]},  # a line
], ids=["zero-box", "zero-area-polygon"])
def test_a_zero_area_coco_annotation_is_skipped_so_perfect_predictions_score_ap_1(tmp_path, degenerate):
    dataset = coco_urban.CocoUrbanSubset(coco_folder(tmp_path / "coco", [degenerate]))
    with pytest.warns(UserWarning, match="skipped 1 annotation"):
        _, target = dataset[0]
    assert target["boxes"].tolist() == [[10.0, 10.0, 30.0, 30.0]]
    perfect = {"boxes": target["boxes"], "labels": target["labels"], "scores": torch.ones(1),
               "masks": target["masks"][:, None].float()}
    metrics = coco_eval.coco_metrics([perfect], [target])
    assert metrics["segm"]["per_class"]["car"]["AP"] == pytest.approx(1.0)
    assert metrics["bbox"]["per_class"]["car"]["AP"] == pytest.approx(1.0)


def test_a_two_point_coco_polygon_is_skipped_not_a_crash(tmp_path):
    two_points = {"category_id": 1, "area": 0.0, "bbox": [5, 5, 15, 15], "segmentation": [[5, 5, 20, 20]]}
    dataset = coco_urban.CocoUrbanSubset(coco_folder(tmp_path / "coco", [two_points]))
    with pytest.warns(UserWarning, match="skipped 1 annotation"):
        _, target = dataset[0]
    assert target["labels"].tolist() == [coco_urban.COCO_TO_INDEX[3]]
    with pytest.warns(UserWarning, match="skipped 1 annotation"):
        assert dataset.image_labels(0) == [coco_urban.COCO_TO_INDEX[3]]


@pytest.mark.parametrize("option", [["--length", "0"], ["--length", "-1"], ["--length", "2", "--limit", "0"]],
                         ids=["length-0", "length-negative", "limit-0"])
def test_eval_of_no_images_is_an_error(tmp_path, small_model, capsys, option):
    out = tmp_path / "metrics.json"
    assert main(["eval", *TOYCITY, "--model", "toycity", *option, "--json", str(out)]) == 2
    assert "at least 1 image" in one_error_line(capsys)
    assert not out.exists()


def test_eval_json_is_strict_json_with_null_for_undefined_metrics(tmp_path, small_model):
    out = tmp_path / "metrics.json"
    assert main(["eval", *TOYCITY, "--model", "toycity", "--length", "1", "--json", str(out)]) == 0

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    metrics = json.loads(out.read_text(), parse_constant=refuse)
    per_class = metrics["segm"]["per_class"]
    assert any(row["AP"] is None for row in per_class.values()), "one scene lacks some class: its AP is undefined"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished one-step training run of the command line: last.pt, model.pt, history.json."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    assert {"last.pt", "model.pt", "history.json"} <= {p.name for p in out.iterdir()}
    return out


@pytest.mark.parametrize("change", [["--seed", "1"], ["--batch-size", "4"], ["--lr", "0.05"], ["--steps", "2"]],
                         ids=["seed", "batch-size", "lr", "steps"])
def test_resume_with_other_settings_is_an_error(finished_run, tmp_path, capsys, change):
    run = shutil.copytree(finished_run, tmp_path / "run")
    before = snapshot(run)
    argv = [*TRAIN, "--out", str(run), "--resume"]
    flag = argv.index(change[0]) if change[0] in argv else None
    argv = argv[:flag] + argv[flag + 2:] if flag is not None else argv
    assert main([*argv, *change]) == 2
    line = one_error_line(capsys)
    assert f"{change[0][2:].replace('-', '_')}=" in line and "resume with the checkpoint's settings" in line
    assert snapshot(run) == before


# --------------------------------------------------------------------------- one line instead of a traceback


@pytest.mark.parametrize("layout", ["missing", "empty", "incomplete"])
def test_cityscapes_folder_problems_are_one_line(tmp_path, small_model, capsys, layout):
    root = tmp_path / "cityscapes"
    if layout != "missing":
        (root / "leftImg8bit" / "val" / "lindau").mkdir(parents=True)
        (root / "gtFine" / "val" / "lindau").mkdir(parents=True)
    if layout == "incomplete":
        cv2.imwrite(str(root / "leftImg8bit" / "val" / "lindau" / "lindau_000000_000019_leftImg8bit.png"),
                    np.zeros((32, 64, 3), np.uint8))
    assert main(["eval", "--data", "cityscapes", "--root", str(root), "--model", "toycity"]) == 2
    line = one_error_line(capsys)
    expected = {"missing": "missing folder", "empty": "no */*_leftImg8bit.png", "incomplete": "missing file"}[layout]
    assert expected in line and "download_cityscapes.py" in line


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_resume_from_a_damaged_checkpoint_is_one_line_and_keeps_it(finished_run, tmp_path, capsys, damage):
    run = shutil.copytree(finished_run, tmp_path / "run")
    checkpoint = run / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:len(checkpoint.read_bytes()) // 2] if damage == "truncated" else b"")
    before = snapshot(run)
    assert main([*TRAIN, "--out", str(run), "--resume"]) == 2
    assert "last.pt is not a readable checkpoint" in one_error_line(capsys)
    assert snapshot(run) == before


def test_coco_weights_offline_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing cached

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    assert main([*TRAIN, "--arch", "r50_fpn", "--weights", "DEFAULT", "--out", str(tmp_path / "run")]) == 2
    assert "weights DEFAULT: cannot download them" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_coco_weights_offline_from_python_are_weights_unavailable(tmp_path, monkeypatch):
    from course_lib.errors import WeightsUnavailable
    from course_lib.modeling import maskrcnn as models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing cached
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    with pytest.raises(WeightsUnavailable, match="weights DEFAULT: cannot download them"):
        models.build("r50_fpn", weights="DEFAULT")


def test_a_1x1_image_is_one_line(tmp_path, small_model, capsys):
    write_frames(tmp_path / "frames", frames_of(height=1, width=1, count=1))
    assert main(["video", str(tmp_path / "frames"), str(tmp_path / "out.mp4")]) == 2
    assert "is 1x1 pixels: Mask R-CNN needs at least 32 pixels a side" in one_error_line(capsys)
    assert not (tmp_path / "out.mp4").exists()


def test_frames_over_the_pixel_limit_are_downscaled_with_a_warning(tmp_path, small_model, capsys, monkeypatch):
    monkeypatch.setattr(video_io, "MAX_PIXELS", 64 * 128)  # stands for 4K: the same guard without allocating GBs
    write_frames(tmp_path / "frames", frames_of(height=128, width=256, count=2))
    out = tmp_path / "out.mp4"
    assert main(["video", str(tmp_path / "frames"), str(out), "--no-side-by-side"]) == 0
    assert capsys.readouterr().err.count("warning: ") == 1  # once, not once a frame
    capture = cv2.VideoCapture(str(out))
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (128, 64)
    capture.release()


def test_an_error_after_the_first_frame_leaves_the_earlier_video_and_no_partial_one(tmp_path, small_model, capsys):
    paths = write_frames(tmp_path / "frames", frames_of(count=4))
    paths[2].write_text("not an image")
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier result")
    before = snapshot(tmp_path)
    assert main(["video", str(tmp_path / "frames"), str(out)]) == 2
    assert "0002.png: OpenCV cannot read this image" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


def test_a_fault_while_writing_a_video_keeps_the_earlier_one(tmp_path, small_model, monkeypatch):
    write_frames(tmp_path / "frames", frames_of(count=3))
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier result")

    calls = []

    def two_frames_then_fault(model):
        def detect(frames, clock):
            calls.append(len(frames))
            if len(calls) == 3:
                raise RuntimeError("out of memory")
            return [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
                    for _ in frames]
        return detect

    monkeypatch.setattr(pipeline, "eager_detector", two_frames_then_fault)
    with pytest.raises(RuntimeError, match="out of memory"):
        main(["video", str(tmp_path / "frames"), str(out)])
    assert out.read_bytes() == b"an earlier result" and sorted(p.name for p in tmp_path.iterdir()) == ["frames", "out.mp4"]


# --------------------------------------------------------------------------- atomic writes


def test_atomic_path_keeps_the_earlier_file_on_failure(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("earlier")
    with pytest.raises(OSError):
        with atomic.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise OSError("disk full")
    assert path.read_text() == "earlier" and [p.name for p in tmp_path.iterdir()] == ["result.json"]
    atomic.write_json(path, {"AP": float("nan")})
    assert json.loads(path.read_text()) == {"AP": None}


@pytest.mark.parametrize("name", ["model.pt", "history.json"])
def test_train_writes_model_and_history_atomically(finished_run, tmp_path, disk_full, capsys, name):
    run = shutil.copytree(finished_run, tmp_path / "run")
    before = snapshot(run)
    disk_full(name)
    assert main([*TRAIN, "--out", str(run), "--resume"]) == 2  # the run is complete: straight to writing its results
    assert "no space left on the disk" in one_error_line(capsys)
    assert snapshot(run)[name] == before[name]
    assert not any(p.name.startswith(f".{name}") for p in run.iterdir())


def test_eval_json_is_written_atomically(tmp_path, small_model, disk_full, capsys):
    out = tmp_path / "metrics.json"
    out.write_text('{"earlier": true}')
    disk_full("metrics.json")
    assert main(["eval", *TOYCITY, "--model", "toycity", "--length", "1", "--json", str(out)]) == 2
    assert "no space left on the disk" in one_error_line(capsys)
    assert json.loads(out.read_text()) == {"earlier": True} and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_bench_results_are_written_atomically(tmp_path, disk_full):
    out = tmp_path / "benchmark.json"
    results.save_results({"variants": ["earlier"]}, out)
    disk_full("benchmark.json")
    with pytest.raises(OSError, match="No space left"):
        results.save_results({"variants": ["new"]}, out)
    assert json.loads(out.read_text()) == {"variants": ["earlier"]} and [p.name for p in tmp_path.iterdir()] == ["benchmark.json"]


def test_coco_download_never_leaves_a_partial_annotation_file(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("download_coco", Path(__file__).parents[1] / "data_scripts/download_coco.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    archive = tmp_path / "annotations.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(script.INSTANCES_MEMBER, json.dumps({"images": [], "annotations": [], "categories": []}) + " " * 200_000)
    monkeypatch.setattr(script, "download", lambda url, dest, **kwargs: archive)
    original_read = zipfile.ZipExtFile.read

    def bad_crc_at_the_end(self, n=-1):  # zipfile checks the CRC when it reaches the end of a member
        if n is None or n < 0 or self._left <= n:
            raise zipfile.BadZipFile("Bad CRC-32 for file 'annotations/instances_val2017.json'")
        return original_read(self, n)

    monkeypatch.setattr(zipfile.ZipExtFile, "read", bad_crc_at_the_end)
    with pytest.raises(zipfile.BadZipFile):
        script.fetch_annotations(tmp_path / "coco")
    assert not (tmp_path / "coco" / script.INSTANCES_MEMBER).exists(), "a partial file would pass for the real one"
    monkeypatch.setattr(zipfile.ZipExtFile, "read", original_read)
    assert script.fetch_annotations(tmp_path / "coco")["images"] == []


def test_train_toycity_writes_its_weights_atomically(tmp_path, disk_full, data_script_main):
    out = tmp_path / "run"
    out.mkdir()
    (out / "toycity_maskrcnn.pt").write_bytes(b"earlier weights")
    disk_full("toycity_maskrcnn")
    with pytest.raises(SystemExit) as stop:
        data_script_main("train_toycity")(["--steps", "1", "--batch-size", "2", "--warmup", "1", "--height", "64",
                                           "--width", "128", "--val-length", "1", "--eval-every", "1", "--threads", "1",
                                           "--no-install", "--out", str(out)])
    assert stop.value.code == 2
    assert (out / "toycity_maskrcnn.pt").read_bytes() == b"earlier weights"
    assert not any(p.name.startswith(".toycity_maskrcnn") for p in out.iterdir())

