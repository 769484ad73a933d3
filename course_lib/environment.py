"""Where the course runs and what its results come from: device, fast mode, seeding, banner.

``COURSE_FAST=1`` (set by the test suite and CI) shrinks image sizes and iteration counts so every
notebook runs in seconds on a 2-core CPU. Without it, notebooks run what a learner should see.
``COURSE_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``) overrides the automatic device choice.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from course_lib.errors import DeviceUnavailable

T = TypeVar("T")


def fast_mode() -> bool:
    """True when ``COURSE_FAST=1``: shrink sizes and iterations (tests, CI)."""
    return os.environ.get("COURSE_FAST", "0") == "1"


def pick(fast: T, full: T) -> T:
    """Return ``fast`` in fast mode and ``full`` otherwise: ``steps = pick(20, 2000)``."""
    return fast if fast_mode() else full


def device() -> torch.device:
    """The device the course computes on: ``COURSE_DEVICE`` if set, else CUDA when present, else CPU."""
    wanted = os.environ.get("COURSE_DEVICE")
    if wanted:
        try:
            chosen = torch.device(wanted)
        except RuntimeError:
            raise DeviceUnavailable(f"COURSE_DEVICE={wanted} is not a device: set cpu, cuda or cuda:N, or unset it") from None
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"COURSE_DEVICE={wanted} but torch sees no CUDA GPU. "
                "Unset COURSE_DEVICE to run on the CPU, or pick a GPU runtime (Colab: Runtime > Change runtime type)."
            )
        if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
            raise DeviceUnavailable(f"COURSE_DEVICE={wanted} but torch sees {torch.cuda.device_count()} CUDA GPU(s): "
                           "use cuda:0 up to the last one, or unset it")
        return chosen
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_device(model: nn.Module) -> torch.device:
    """Where ``model`` computes: the ``device`` of an exported predictor behind the same call
    (:class:`course_lib.deploy.predictor.RuntimePredictor`), else its parameters' device (the CPU without any)."""
    if isinstance(getattr(model, "device", None), torch.device):
        return model.device
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def banner(model: str, data: str, recorded: dict | None = None, source: str | None = None) -> str:
    """A one-line statement of where a result comes from, e.g. ``banner('ToyCity model', 'ToyCity val')``.

    Every number the course prints is preceded by such a line, so a ToyCity number is never
    mistaken for a Cityscapes number. For a result read from a committed results file, pass the
    file's record (``recorded``, a dict with ``device`` or ``cpu``, ``threads``, ``date``) and its
    name (``source``): the line then names the machine that file records, never this one.
    """
    if recorded is None:
        mode = "fast mode" if fast_mode() else "full mode"
        return f"[results from] model: {model} | data: {data} | device: {device()} | {mode}"
    machine = recorded.get("device") or recorded.get("cpu") or "device not recorded"
    threads = f", {recorded['threads']} threads" if "threads" in recorded else ""
    date = f" on {recorded['date']}" if "date" in recorded else ""
    return f"[results from] model: {model} | data: {data} | device: {machine}{threads} | recorded{date} in {source or 'a results file'}"


def print_banner(model: str, data: str, recorded: dict | None = None, source: str | None = None) -> str:
    """Print :func:`banner` and return it."""
    line = banner(model, data, recorded, source)
    print(line)
    return line


def cityscapes_root() -> Path | None:
    """The Cityscapes folder named by ``CITYSCAPES_DATASET`` if it holds ``leftImg8bit`` and ``gtFine``."""
    root = os.environ.get("CITYSCAPES_DATASET")
    if not root:
        return None
    path = Path(root).expanduser()
    return path if (path / "leftImg8bit").is_dir() and (path / "gtFine").is_dir() else None


def export_cache_dir() -> Path:
    """Where exported and calibrated models are kept between runs (:mod:`course_lib.deploy.cache`):
    ``COURSE_EXPORT_CACHE`` if set, else ``course_lib_exports`` beside the downloaded weights, in torch
    hub's folder (which honours ``TORCH_HOME``): never among the user's own files."""
    return Path(os.environ.get("COURSE_EXPORT_CACHE") or Path(torch.hub.get_dir()) / "course_lib_exports").expanduser()


def cpu_has_bf16_units() -> bool | None:
    """Whether the CPU computes bfloat16 natively (AMX or AVX512-BF16 flags); None if unknown (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return None
    return "amx_bf16" in flags or "avx512_bf16" in flags
