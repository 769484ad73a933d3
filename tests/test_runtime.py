"""course_lib.runtime: fast mode, device choice, seeding, banner, Cityscapes detection."""

import pytest
import torch

from course_lib import runtime


def test_fast_mode_and_pick(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    assert runtime.fast_mode() and runtime.pick(2, 2000) == 2
    monkeypatch.setenv("COURSE_FAST", "0")
    assert not runtime.fast_mode() and runtime.pick(2, 2000) == 2000


def test_device_override_and_clear_error(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert runtime.device() == torch.device("cpu")
    if not torch.cuda.is_available():
        monkeypatch.setenv("COURSE_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="Unset COURSE_DEVICE"):
            runtime.device()


def test_seed_everything_repeats_random_draws():
    runtime.seed_everything(7)
    first = torch.rand(3)
    runtime.seed_everything(7)
    assert torch.equal(first, torch.rand(3))


def test_banner_names_model_data_and_mode(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    line = runtime.banner("ToyCity model", "ToyCity val")
    assert "ToyCity model" in line and "ToyCity val" in line and "fast mode" in line


def test_cityscapes_root_requires_both_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("CITYSCAPES_DATASET", raising=False)
    assert runtime.cityscapes_root() is None
    monkeypatch.setenv("CITYSCAPES_DATASET", str(tmp_path))
    (tmp_path / "leftImg8bit").mkdir()
    assert runtime.cityscapes_root() is None, "a half-downloaded folder is not a dataset"
    (tmp_path / "gtFine").mkdir()
    assert runtime.cityscapes_root() == tmp_path
