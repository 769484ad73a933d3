"""course_lib.engine.distributed + train: two processes, each on half of every batch, train like one on all of it."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from course_lib import environment
from course_lib.cli import train
from course_lib.engine import checkpoint, distributed, trainer
from course_lib.engine.settings import TrainSettings
from course_lib.errors import BadInput


class Colours(torch.utils.data.Dataset):
    """Random 3x4x4 images; the target is the index modulo 3 (deterministic by index)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        image = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(index))
        return image, {"labels": torch.tensor([index % 3], dtype=torch.float32)}


class ColourRegression(nn.Module):
    """A stand-in for a detector: ``model(images, targets)`` returns a dict of losses, here one
    squared error per image averaged over the images (so halves of a batch average to the whole)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fit = nn.Linear(3, 1)

    def forward(self, images, targets):
        predictions = self.fit(torch.stack([image.mean(dim=(1, 2)) for image in images]))[:, 0]
        labels = torch.cat([target["labels"] for target in targets])
        return {"loss_fit": ((predictions - labels) ** 2).mean()}


SETTINGS = TrainSettings(steps=6, batch_size=2, lr=0.05, optimizer="adamw", warmup_steps=1, amp="off")
RUN = dict(checkpoint_every=3, progress=False, device=torch.device("cpu"))


def _train_and_save(out: Path, batch_size: int = 2) -> None:
    """Train in this process (rank r of a launch, or alone) and save the weights as ``rank{r}.pt``."""
    model = ColourRegression()
    trainer.train(model, Colours(), dataclasses.replace(SETTINGS, batch_size=batch_size), checkpoint_dir=out, **RUN)
    torch.save(model.state_dict(), out / f"rank{distributed.rank_and_world()[0]}.pt")


class NaNOnRank1(Colours):
    """Colours, but process 1 loads NaN images from its 4th item on (process 0 stays finite)."""

    calls = 0

    def __getitem__(self, index: int):
        image, target = super().__getitem__(index)
        self.calls += 1
        if distributed.rank_and_world()[0] == 1 and self.calls > 3:
            image = torch.full_like(image, float("nan"))
        return image, target


def _train_until_diverged(out: Path) -> None:
    try:
        trainer.train(ColourRegression(), NaNOnRank1(), SETTINGS, checkpoint_dir=out, **RUN)
    except trainer.TrainingDiverged as error:
        (out / f"rank{distributed.rank_and_world()[0]}.diverged").write_text(str(error))
        raise


def test_a_nan_in_one_process_stops_every_process(tmp_path):
    with pytest.raises(Exception, match="loss is nan at step 3"):
        distributed.launch(_train_until_diverged, tmp_path, processes=2)
    # both raised (neither was left waiting for the other's gradients), before touching the weights
    assert sorted(p.name for p in tmp_path.glob("*.diverged")) == ["rank0.diverged", "rank1.diverged"]
    assert checkpoint.load_checkpoint(tmp_path / checkpoint.CHECKPOINT_NAME)["step"] == 3


def test_each_process_loads_its_share_of_every_batch():
    whole = list(trainer.batches(Colours(), start=2, steps=4, batch_size=4, seed=1))
    halves = [list(trainer.batches(Colours(), start=2, steps=4, batch_size=4, seed=1, rank=r, world=2)) for r in (0, 1)]
    for step, batch in enumerate(whole):
        shared = halves[0][step] + halves[1][step]
        assert len(halves[0][step]) == len(halves[1][step]) == 2
        assert all(torch.equal(a[0], b[0]) for a, b in zip(batch, shared))


def test_two_processes_train_like_one(tmp_path):
    distributed.launch(_train_and_save, tmp_path / "two", processes=2)
    _train_and_save(tmp_path / "one")
    rank0, rank1, alone = (torch.load(p) for p in (tmp_path / "two" / "rank0.pt", tmp_path / "two" / "rank1.pt", tmp_path / "one" / "rank0.pt"))
    for name in alone:
        assert torch.equal(rank0[name], rank1[name]), f"{name}: the processes drifted apart"
        assert torch.allclose(rank0[name], alone[name], atol=1e-6), f"{name}: 2 processes x 1 image != 1 process x 2 images"
    assert not torch.allclose(alone["fit.weight"], ColourRegression().fit.weight), "the weights did not move"

    saved = checkpoint.load_checkpoint(tmp_path / "two" / checkpoint.CHECKPOINT_NAME)
    assert saved["step"] == SETTINGS.steps and len(saved["rng_by_rank"]) == 2
    logged = [r["loss"] for r in saved["history"]["loss"]]
    alone_logged = [r["loss"] for r in checkpoint.load_checkpoint(tmp_path / "one" / checkpoint.CHECKPOINT_NAME)["history"]["loss"]]
    assert logged == pytest.approx(alone_logged, rel=1e-5), "the logged loss is the mean over both processes"


def test_a_checkpoint_resumes_only_with_as_many_processes(tmp_path):
    distributed.launch(_train_and_save, tmp_path, processes=2)
    with pytest.raises(ValueError, match=r"written by 2 training process\(es\): resume it with 2"):
        trainer.train(ColourRegression(), Colours(), dataclasses.replace(SETTINGS, steps=8), checkpoint_dir=tmp_path,
                      resume=True, **RUN)


def test_the_batch_must_split_over_the_processes(tmp_path):
    with pytest.raises(Exception, match="batch_size 3 does not split over 2 processes"):
        distributed.launch(_train_and_save, tmp_path, 3, processes=2)
    with pytest.raises(ValueError, match="processes must be >= 1"):
        distributed.launch(_train_and_save, tmp_path, processes=0)


def test_cli_trains_toycity_in_two_processes(tmp_path):
    argv = ["--data", "toycity", "--length", "4", "--height", "64", "--width", "128", "--steps", "2",
            "--batch-size", "2", "--warmup", "1", "--out", str(tmp_path), "--processes", "2"]
    assert train.cli(argv) == 0
    state = checkpoint.load_checkpoint(tmp_path / checkpoint.CHECKPOINT_NAME)
    assert state["step"] == 2 and len(state["rng_by_rank"]) == 2
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "history.json").is_file()
    with pytest.raises(BadInput, match="must be a multiple of --processes 2"):  # 3 images do not split over 2 processes
        train.cli([*argv, "--batch-size", "3"])


LAUNCHER = '''
import os, sys, time
from course_lib.engine import distributed

def wait(folder):
    open(os.path.join(folder, str(os.getpid())), "w").close()
    time.sleep(120)

if __name__ == "__main__":
    distributed.launch(wait, sys.argv[1], processes=2)
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_stop_when_the_launcher_is_killed(tmp_path):
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER)
    # started as by `nohup ... &`: SIGINT ignored, which torch's own parent-death signal is
    launcher = subprocess.Popen([sys.executable, str(script), str(tmp_path)],
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 60
    while len([p for p in tmp_path.iterdir() if p.name.isdigit()]) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = [int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()]
    assert len(workers) == 2 and all(_alive(pid) for pid in workers), "the two workers did not start"
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "a worker kept running after its launcher died"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited and only waits to be reaped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a process group and its signals, as a Linux terminal has them")
def test_ctrl_c_with_two_processes_saves_once_from_rank_0_and_exits_130(tmp_path):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in environment.PROCESS_GROUP_VARIABLES}
    # no periodic checkpoint: a last.pt can only come from the stop
    run = subprocess.Popen([sys.executable, "-m", "course_lib", "train", "--data", "toycity", "--length", "4", "--height", "64",
                            "--width", "128", "--steps", "400", "--batch-size", "2", "--warmup", "1",
                            "--checkpoint-every", "1000", "--processes", "2", "--out", str(out)],
                           env={**env, "OMP_NUM_THREADS": "1"}, start_new_session=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "tensorboard").is_dir() and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.2)
    time.sleep(3)  # a few steps in
    os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: SIGINT to every process of the foreground group
    _, err = run.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert run.returncode == 130 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    state = checkpoint.load_checkpoint(out / checkpoint.CHECKPOINT_NAME)
    step = state["step"]
    assert 0 < step < 400 and f"step {step} of 400" in lines[0] and "--resume" in lines[0]
    assert [r["step"] for r in state["history"]["loss"]] == list(range(step)) and len(state["rng_by_rank"]) == 2
    assert not (out / "model.pt").exists()
