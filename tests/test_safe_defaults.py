"""Safe by default: no file a user is handed can run code, no output lands on an input or in an
unwritable place after minutes of work, and a training run survives a second run, Ctrl-C and a
full disk. Every case runs through ``python -m course_lib`` in-process (``course_lib.cli.main``),
with hash snapshots of the user's files before and after (the pattern of ``test_bad_input.py``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import torch

from course_lib import deploy, zoo
from course_lib.cli import main
from course_lib.engine import checkpoint, trainer
from course_lib.zoo.registry import _toycity_file, toycity_manifest
from test_bad_input import TOYCITY, TRAIN, frames_of, one_error_line, snapshot, write_frames


class RunsACommand:
    """Unpickling this runs ``touch MARKER``: what a hostile ``.pt`` can do under ``weights_only=False``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def hostile_checkpoint(tmp_path) -> tuple[Path, Path]:
    """(a .pt holding the real ToyCity weights plus a command, the marker file the command would create)."""
    marker = tmp_path / "code-ran"
    weights = torch.load(_toycity_file(toycity_manifest()), weights_only=True)
    path = tmp_path / "shared" / "model.pt"
    path.parent.mkdir()
    torch.save({"model": weights, "step": 1, "note": RunsACommand(marker)}, path)
    return path, marker


def test_the_hostile_file_does_run_its_command_when_unpickled(hostile_checkpoint):
    """The stand-in is a real threat: without weights_only it runs the command (so the tests below can fail)."""
    path, marker = hostile_checkpoint
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("command", ["eval", "video", "bench", "export", "train --resume"])
def test_a_checkpoint_that_carries_code_is_refused_by_every_command(hostile_checkpoint, tmp_path, capsys, command):
    if command == "export" and not deploy.available():
        pytest.skip("export needs course_lib[deploy] (ONNX, ONNX Runtime, OpenVINO, NNCF), which this environment lacks")
    path, marker = hostile_checkpoint
    frames = tmp_path / "frames"
    write_frames(frames, frames_of(count=2))
    run = tmp_path / "run"
    if command == "train --resume":
        run.mkdir()
        shutil.copy(path, run / checkpoint.CHECKPOINT_NAME)
    argv = {
        "eval": ["eval", *TOYCITY, "--length", "1", "--model", str(path)],
        "video": ["video", str(frames), str(tmp_path / "out.mp4"), "--model", str(path)],
        "bench": ["bench", "--model", str(path), "--variants", "baseline", "--val", "1", "--repeats", "1", "--no-eval"],
        "export": ["export", "--model", str(path), "--runtime", "ort", "--out", str(tmp_path / "model.onnx")],
        "train --resume": [*TRAIN, "--out", str(run), "--resume"],
    }[command]
    before = snapshot(tmp_path)
    assert main(argv) == 2
    assert "could run code, so it is refused" in one_error_line(capsys)
    assert not marker.exists()
    assert snapshot(tmp_path) == before  # train's lock file is gone with the refused run


@pytest.mark.parametrize("content", ["missing", "empty", "text", "json-results", "results-as-manifest", "other-classes", "other-arch"])
def test_a_model_file_that_is_not_this_architecture_s_weights_is_one_line(tmp_path, capsys, untrained_toycity_model, content):
    from course_lib.modeling.maskrcnn import build

    path = tmp_path / ("eval.json" if content == "json-results" else "model.pt")
    if content == "results-as-manifest":  # eval --json model.json beside the weights reads as their manifest
        torch.save(untrained_toycity_model.state_dict(), path)
        path.with_suffix(".json").write_text('{"segm": {"AP": 0.5}}')
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "text":
        path.write_text("not a checkpoint\n")
    elif content == "json-results":
        path.write_text('{"segm": {"AP": 0.5}}')
    elif content == "other-classes":
        torch.save(build("toycity_small", num_classes=4).state_dict(), path)
    elif content == "other-arch":
        torch.save({"backbone.body.conv1.weight": torch.zeros(8, 3, 3, 3)}, path)
    assert main(["eval", *TOYCITY, "--length", "1", "--model", str(path)]) == 2
    line = one_error_line(capsys)
    expected = {"missing": "'detectron2:<model-zoo name>' or the path of a checkpoint", "empty": "not a readable checkpoint",
                "text": "not a readable checkpoint", "json-results": "is a JSON file",
                "results-as-manifest": "model.json is not a weights manifest (no sha256, arch)",
                "other-classes": "does not fit architecture toycity_small", "other-arch": "does not fit architecture"}
    assert expected[content] in line


def test_a_state_dict_of_the_right_architecture_still_loads(tmp_path, untrained_toycity_model):
    """The refusals above are not a refusal of everything (a training run's last.pt, with NumPy's RNG
    state inside, resumes in test_ctrl_c_saves_the_step_and_exits_130_with_one_line)."""
    path = tmp_path / "model.pt"
    torch.save(untrained_toycity_model.state_dict(), path)
    loaded = zoo.from_command_line(str(path), "toycity_small", "cpu")
    for (name, a), b in zip(untrained_toycity_model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


# --------------------------------------------------------------------------- outputs checked before work


def test_video_toycity_with_one_name_never_replaces_that_file(tmp_path, capsys):
    mine = tmp_path / "my_street.mp4"
    mine.write_bytes(b"the user's own video")
    before = snapshot(tmp_path)
    assert main(["video", str(mine), "--toycity", "--frames", "2"]) == 2
    assert "already exists" in one_error_line(capsys)
    assert main(["video", str(mine), str(tmp_path / "clip.mp4"), "--toycity", "--frames", "2"]) == 2
    assert "leave out INPUT" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("output", ["0001.png", "new.mp4", "."], ids=["an-input-frame", "inside-the-input", "the-folder"])
def test_video_output_inside_its_frame_folder_is_refused(tmp_path, capsys, output):
    frames = tmp_path / "frames"
    write_frames(frames, frames_of(count=3))
    before = snapshot(tmp_path)
    assert main(["video", str(frames), str(frames / output)]) == 2
    assert ("inside the input folder" if output != "." else "is a folder") in one_error_line(capsys)
    assert snapshot(tmp_path) == before


@pytest.fixture
def refuse_work(monkeypatch):
    """Make the expensive parts of eval and bench fail loudly: an output refused after them came too late."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the command computed before checking its output")

    from course_lib.deploy import benchmark
    from course_lib.evaluation import inference

    monkeypatch.setattr(inference, "inference_on_dataset", forbidden)
    monkeypatch.setattr(benchmark, "run_benchmark", forbidden)
    monkeypatch.setattr(zoo, "from_command_line", forbidden)


@pytest.mark.parametrize("where", ["under-a-file", "a-folder", "the-model"])
@pytest.mark.parametrize("command", ["eval", "bench"])
def test_eval_and_bench_refuse_an_unwritable_output_before_computing(tmp_path, capsys, refuse_work, where, command):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    (tmp_path / "model.pt").write_bytes(b"weights")
    out = {"under-a-file": tmp_path / "notes.txt" / "metrics.json", "a-folder": tmp_path,
           "the-model": tmp_path / "model.pt"}[where]
    model = str(tmp_path / "model.pt")
    argv = (["eval", *TOYCITY, "--length", "1", "--model", model, "--json", str(out)] if command == "eval"
            else ["bench", "--model", model, "--variants", "baseline", "--out", str(out)])
    before = snapshot(tmp_path)
    assert main(argv) == 2
    expected = {"under-a-file": "is a file, so", "a-folder": "is a folder", "the-model": "also this command's input"}
    assert expected[where] in one_error_line(capsys)
    assert snapshot(tmp_path) == before


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size)``: a fresh tmpfs of ``size`` (mount's syntax, e.g. "2m") under ``tmp_path``, unmounted after."""
    mounted = []

    def mount(size: str, options: str = "") -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root and mount): {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)  # lazy: a failed test may hold a file open there


def test_a_read_only_output_folder_is_refused_before_computing(tmpfs, capsys, refuse_work):
    folder = tmpfs("1m", ",ro")  # root ignores permission bits: only a read-only mount stops it
    assert main(["eval", *TOYCITY, "--length", "1", "--model", "toycity", "--json", str(folder / "m.json")]) == 2
    assert "cannot write in" in one_error_line(capsys)


def test_eval_json_on_a_full_disk_is_one_line_and_keeps_the_earlier_file(tmpfs, capsys, monkeypatch, untrained_toycity_model):
    monkeypatch.setattr(zoo, "from_command_line", lambda *args, **kwargs: untrained_toycity_model)
    disk = tmpfs("2m")
    out = disk / "metrics.json"
    out.write_text('{"earlier": true}')
    with open(disk / "filler", "wb", buffering=0) as filler:  # fill the disk to the last byte
        with pytest.raises(OSError, match="No space left"):
            while True:
                filler.write(b"\0" * 65536)
    assert main(["eval", *TOYCITY, "--length", "1", "--model", "toycity", "--json", str(out)]) == 2
    assert "no space left on the disk" in one_error_line(capsys)
    assert out.read_text() == '{"earlier": true}' and sorted(p.name for p in disk.iterdir()) == ["filler", "metrics.json"]


def test_a_checkpoint_on_a_full_disk_is_one_line_and_the_earlier_one_stays(tmpfs, capsys, tmp_path):
    probe = tmp_path / "probe"
    assert main([*TRAIN, "--out", str(probe)]) == 0
    size = (probe / checkpoint.CHECKPOINT_NAME).stat().st_size
    disk = tmpfs(str(size * 3 // 2))  # room for the step-1 checkpoint, not for a second one beside it
    run = disk / "run"
    argv = [*TRAIN, "--out", str(run), "--steps", "2", "--checkpoint-every", "1"]
    capsys.readouterr()
    assert main(argv) == 2
    assert f"no space left on the disk to write {run / 'last.pt'}" in one_error_line(capsys)
    assert checkpoint.load_checkpoint(run / checkpoint.CHECKPOINT_NAME)["step"] == 1
    assert not any(p.name.startswith(".last.pt") for p in run.iterdir())


# --------------------------------------------------------------------------- the training run


def test_resume_of_a_folder_without_a_checkpoint_is_refused_not_a_fresh_run(tmp_path, capsys):
    for folder in (tmp_path / "mistyped", tmp_path):  # absent, and present without last.pt
        assert main([*TRAIN, "--out", str(folder), "--resume"]) == 2
        assert "holds no last.pt to continue from" in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_train_out_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "run").write_text("my notes")
    assert main([*TRAIN, "--out", str(tmp_path / "run")]) == 2
    assert "is a file" in one_error_line(capsys)
    assert (tmp_path / "run").read_text() == "my notes"


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_runs(tmp_path, capsys, monkeypatch):
    started, finish = threading.Event(), threading.Event()
    real_train = trainer.train

    def train_until_told(*args, **kwargs):  # the first run holds its folder until the test lets it finish
        started.set()
        assert finish.wait(120)
        return real_train(*args, **kwargs)

    monkeypatch.setattr("course_lib.cli.train.train", train_until_told)
    out = tmp_path / "run"
    codes = []
    first = threading.Thread(target=lambda: codes.append(main([*TRAIN, "--out", str(out)])))
    first.start()
    try:
        assert started.wait(120)
        assert main([*TRAIN, "--out", str(out)]) == 2
        assert "is in use by another training run" in one_error_line(capsys)
    finally:
        finish.set()
        first.join()
    assert codes == [0] and checkpoint.load_checkpoint(out / checkpoint.CHECKPOINT_NAME)["step"] == 1


@pytest.fixture
def ctrl_c_during_step_2(monkeypatch):
    """Ctrl-C (SIGINT to this process) while the second training step runs."""
    calls = []
    real = trainer.batch_to_device

    def batch_to_device(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "batch_to_device", batch_to_device)


def test_ctrl_c_saves_the_step_and_exits_130_with_one_line(tmp_path, capsys, ctrl_c_during_step_2):
    handler = signal.getsignal(signal.SIGINT)
    out = tmp_path / "run"
    argv = [*TRAIN, "--out", str(out), "--steps", "4", "--checkpoint-every", "100"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and "Traceback" not in err and "step 2 of 4" in lines[0] and "--resume" in lines[0]
    assert checkpoint.load_checkpoint(out / checkpoint.CHECKPOINT_NAME)["step"] == 2
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C works as usual afterwards
    assert main([*argv, "--resume"]) == 0
    assert checkpoint.load_checkpoint(out / checkpoint.CHECKPOINT_NAME)["step"] == 4



# --------------------------------------------------------------------------- options checked at parse time


TRAIN_RUN = [*TRAIN, "--out", "run"]
VIDEO = ["video", "in.mp4", "out.mp4"]
EXPORT = ["export", "--out", "model.onnx"]


@pytest.mark.parametrize("argv, expected", [
    ([*TRAIN_RUN, "--grad-clip", "-1"], "argument --grad-clip: must be above 0, got -1"),
    ([*TRAIN_RUN, "--grad-clip", "nan"], "argument --grad-clip: must be a finite number, got nan"),
    ([*TRAIN_RUN, "--steps", "0"], "argument --steps: must be at least 1, got 0"),
    ([*TRAIN_RUN, "--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    ([*TRAIN_RUN, "--lr", "0"], "argument --lr: must be above 0, got 0"),
    ([*TRAIN_RUN, "--lr", "inf"], "argument --lr: must be a finite number, got inf"),
    ([*TRAIN_RUN, "--warmup", "-1"], "argument --warmup-steps/--warmup: must be at least 0, got -1"),
    ([*TRAIN_RUN, "--weight-decay", "-0.1"], "argument --weight-decay: must be at least 0, got -0.1"),
    ([*TRAIN_RUN, "--repeat-threshold", "2"], "argument --repeat-threshold: must be at most 1, got 2"),
    ([*TRAIN_RUN, "--processes", "0"], "argument --processes: must be at least 1, got 0"),
    ([*TRAIN_RUN, "--checkpoint-every", "0"], "argument --checkpoint-every: must be at least 1, got 0"),
    ([*TRAIN_RUN, "--workers", "-1"], "argument --workers: must be at least 0, got -1"),
    ([*TRAIN_RUN, "--steps", "1.5"], "argument --steps: expected an integer, got '1.5'"),
    ([*TRAIN_RUN, "--height", "abc"], "argument --height: expected an integer, got 'abc'"),
    ([*TRAIN_RUN, "--batch-size", "3", "--processes", "2"], "--batch-size 3 must be a multiple of --processes 2"),
    (["eval", *TOYCITY, "--model", "toycity", "--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (["eval", *TOYCITY, "--model", "x.pt", "--arch", "resnet"], "argument --arch: invalid choice: 'resnet'"),
    ([*VIDEO, "--min-score", "2"], "argument --min-score: must be at most 1, got 2"),
    ([*VIDEO, "--min-score", "nan"], "argument --min-score: must be a finite number, got nan"),
    ([*VIDEO, "--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    ([*VIDEO, "--max-frames", "0"], "argument --max-frames: must be at least 1, got 0"),
    (["bench", "--size", "abc"], "argument --size: expected HxW with both sides at least 32 pixels"),
    (["bench", "--size", "8x8"], "argument --size: expected HxW with both sides at least 32 pixels"),
    (["bench", "--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
    (["bench", "--threads", "0"], "argument --threads: must be at least 1, got 0"),
    ([*EXPORT, "--min-agreement", "nan"], "argument --min-agreement: must be a finite number, got nan"),
    ([*EXPORT, "--min-agreement", "1.5"], "argument --min-agreement: must be at most 1, got 1.5"),
    ([*EXPORT, "--check", "0"], "argument --check: must be at least 1, got 0"),
], ids=lambda value: " ".join([value[0], *value[-2:]]) if isinstance(value, list) else "")
def test_an_option_out_of_range_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, refuse_work, argv, expected):
    from course_lib.engine import distributed

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(distributed, "launch", lambda *args, **kwargs: pytest.fail("training started"))
    assert main(argv) == 2
    assert expected in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_the_shipped_recipe_is_a_valid_settings_object_and_a_mistake_from_python_is_one_line():
    from course_lib.engine.recipes import RECIPES
    from course_lib.engine.settings import TrainSettings
    from course_lib.errors import BadInput

    shipped = TrainSettings(**RECIPES["toycity"])
    assert shipped.warmup_steps == 100 and shipped.amp == "auto"
    with pytest.raises(BadInput, match="--grad-clip must be above 0, got -1"):
        TrainSettings(**{**RECIPES["toycity"], "grad_clip": -1.0})
    with pytest.raises(BadInput, match="--steps is needed"):
        TrainSettings(**RECIPES["finetune"])


@pytest.mark.parametrize("device, expected", [("bogus", "COURSE_DEVICE=bogus is not a device"),
                                              ("cuda:99", "COURSE_DEVICE=cuda:99 but torch sees")])
def test_a_bad_course_device_is_one_line(tmp_path, capsys, monkeypatch, device, expected):
    monkeypatch.setenv("COURSE_DEVICE", device)
    assert main(["eval", *TOYCITY, "--length", "1", "--model", "toycity", "--json", str(tmp_path / "m.json")]) == 2
    assert expected in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["garbage.onnx", "no-metadata.onnx", "garbage.xml"])
def test_a_tampered_export_given_to_runtime_is_one_line(tmp_path, capsys, damage):
    onnx = pytest.importorskip("onnx")
    export = tmp_path / damage
    if damage == "no-metadata.onnx":  # a valid ONNX graph, but not one `export` wrote
        graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["image"], ["boxes"])], "g",
                                       [onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [3, 64, 128])],
                                       [onnx.helper.make_tensor_value_info("boxes", onnx.TensorProto.FLOAT, [3, 64, 128])])
        onnx.save(onnx.helper.make_model(graph), export)
    else:
        export.write_bytes(b"<net>not a model" * 10)
    frames = tmp_path / "frames"
    write_frames(frames, frames_of(count=2))
    before = snapshot(tmp_path)
    assert main(["video", str(frames), str(tmp_path / "out.mp4"), "--runtime", str(export)]) == 2
    assert f"{export} is not a readable export" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


def test_ctrl_c_in_train_toycity_saves_the_step_and_exits_130(tmp_path, capsys, ctrl_c_during_step_2, data_script_main):
    out = tmp_path / "run"
    code = data_script_main("train_toycity")(["--steps", "4", "--batch-size", "2", "--warmup", "1", "--height", "64",
                                              "--width", "128", "--val-length", "1", "--eval-every", "100", "--threads", "1",
                                              "--no-install", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("interrupted:")] == [
        f"interrupted: stopped at the end of step 2 of 4; saved {out / 'last.pt'}: continue with --resume"]
    assert checkpoint.load_checkpoint(out / checkpoint.CHECKPOINT_NAME)["step"] == 2
