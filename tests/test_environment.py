"""course_lib.environment: fast mode, device choice, seeding, banner, Cityscapes detection."""

import pytest
import torch

from course_lib import environment


def test_fast_mode_and_pick(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    assert environment.fast_mode() and environment.pick(2, 2000) == 2
    monkeypatch.setenv("COURSE_FAST", "0")
    assert not environment.fast_mode() and environment.pick(2, 2000) == 2000


def test_device_override_and_clear_error(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert environment.device() == torch.device("cpu")
    if not torch.cuda.is_available():
        monkeypatch.setenv("COURSE_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="Unset COURSE_DEVICE"):
            environment.device()


def test_seed_everything_repeats_random_draws():
    environment.seed_everything(7)
    first = torch.rand(3)
    environment.seed_everything(7)
    assert torch.equal(first, torch.rand(3))


def test_banner_names_model_data_and_mode(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    line = environment.banner("ToyCity model", "ToyCity val")
    assert "ToyCity model" in line and "ToyCity val" in line and "fast mode" in line


def test_cityscapes_root_requires_both_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("CITYSCAPES_DATASET", raising=False)
    assert environment.cityscapes_root() is None
    monkeypatch.setenv("CITYSCAPES_DATASET", str(tmp_path))
    (tmp_path / "leftImg8bit").mkdir()
    assert environment.cityscapes_root() is None, "a half-downloaded folder is not a dataset"
    (tmp_path / "gtFine").mkdir()
    assert environment.cityscapes_root() == tmp_path


def test_banner_of_a_committed_result_names_the_recorded_machine(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    record = {"cpu": "cpu: Recorded CPU (64 logical cores)", "threads": 7, "date": "2026-01-02T03:04:05+00:00"}
    line = environment.banner("ToyCity model", "ToyCity held-out", recorded=record, source="toycity_training.json")
    assert "device: cpu: Recorded CPU (64 logical cores), 7 threads" in line
    assert "2026-01-02T03:04:05+00:00" in line and "toycity_training.json" in line
    assert "fast mode" not in line and "full mode" not in line, "the file's numbers do not depend on this run's mode"
    assert line.count("device:") == 1
