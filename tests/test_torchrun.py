"""``torchrun ... -m course_lib train``: the field's launcher starts the processes (``env://`` rendezvous) and
they train like ``--processes``, which takes the same path; rank 0 alone writes; a bad launch is one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from course_lib import environment
from course_lib.cli import main
from course_lib.engine import checkpoint

TINY = ["train", "--data", "toycity", "--length", "4", "--height", "64", "--width", "128", "--steps", "2",
        "--batch-size", "2", "--warmup", "1"]


def _without_launcher_variables() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in environment.PROCESS_GROUP_VARIABLES}


def test_torchrun_trains_like_processes_and_only_rank_0_writes(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {**_without_launcher_variables(), "OMP_NUM_THREADS": "1"}
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "course_lib", *TINY, "--out", str(tmp_path / "torchrun")],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]
    torch.set_num_threads(2)  # --processes 2 gives each process half of this process's threads: 1, as torchrun's
    assert main([*TINY, "--processes", "2", "--out", str(tmp_path / "processes")]) == 0

    by_torchrun, by_processes = (checkpoint.load_checkpoint(tmp_path / run / "model.pt") for run in ("torchrun", "processes"))
    assert by_torchrun.keys() == by_processes.keys()
    for name, weights in by_torchrun.items():
        assert torch.equal(weights, by_processes[name]), name
    state = checkpoint.load_checkpoint(tmp_path / "torchrun" / checkpoint.CHECKPOINT_NAME)
    assert state["step"] == 2 and len(state["rng_by_rank"]) == 2
    # rank 1 wrote nothing: one event file (each writer names its own by host and process id), one summary
    # line, the same files as --processes, whose workers write from rank 0 only; nothing in the working folder
    assert len(list((tmp_path / "torchrun" / "tensorboard").iterdir())) == 1
    assert sorted(p.name for p in (tmp_path / "torchrun").iterdir()) == sorted(p.name for p in (tmp_path / "processes").iterdir())
    assert launched.stdout.count("trained 2 steps") == 1 and launched.stdout.count("[results from]") == 1
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize("variables, expected", [
    ({"RANK": "0", "WORLD_SIZE": "2"}, "LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set while RANK, WORLD_SIZE are"),
    ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},
     "RANK=2, WORLD_SIZE=2, LOCAL_RANK=0, MASTER_PORT=29500 do not go together"),
    ({"RANK": "one", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},
     "RANK=one is not a whole number"),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "0"},
     "MASTER_PORT=0 do not go together"),
], ids=["partial", "rank-beyond-world", "not-a-number", "port-0"])
def test_a_bad_launcher_environment_is_one_line(tmp_path, monkeypatch, capsys, variables, expected):
    for name in environment.PROCESS_GROUP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert main([*TINY, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "torchrun" in err
    assert list(tmp_path.iterdir()) == []


def test_a_rendezvous_that_cannot_open_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    with socket.socket() as taken:  # rank 0 opens the meeting point at MASTER_PORT: another program holds it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                            "MASTER_PORT": str(port)}.items():
            monkeypatch.setenv(name, value)
        assert main([*TINY, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"rank 0 of 2 could not meet the other training processes at 127.0.0.1:{port}" in err
    assert list(tmp_path.iterdir()) == [], "the run folder made for the run is removed again"


def test_processes_under_torchrun_is_one_line(tmp_path, monkeypatch, capsys):
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)
    assert main([*TINY, "--processes", "2", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--processes 2 under torchrun" in err


def test_local_rank_picks_the_gpu_and_one_beyond_the_machine_s_gpus_is_one_line(monkeypatch):
    """On a machine with 2 GPUs (stood in for: this one may have none), LOCAL_RANK 1 trains on cuda:1 and
    LOCAL_RANK 2 is refused; outside a group the course's device stays as it was."""
    from course_lib.engine import distributed
    from course_lib.errors import DeviceUnavailable

    monkeypatch.setattr(environment, "device", lambda: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for name in environment.PROCESS_GROUP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distributed.process_device() == torch.device("cuda")
    place = {"RANK": "5", "WORLD_SIZE": "8", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
    for name, value in {**place, "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    assert distributed.process_device() == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(DeviceUnavailable, match="LOCAL_RANK=2 but this machine has 2 GPU"):
        distributed.process_device()
