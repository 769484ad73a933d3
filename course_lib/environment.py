"""Where the course runs and what its results come from: device, fast mode, seeding, banner, data folders.

Every environment variable the library reads is read here (``tests/test_environment.py`` checks):

* ``COURSE_FAST=1`` (set by the test suite and CI) shrinks image sizes and iteration counts so every
  notebook runs in seconds on a 2-core CPU. Without it, notebooks run what a learner should see.
* ``COURSE_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``) overrides the automatic device choice.
* ``COURSE_OFFLINE=1`` keeps the chapters on the ToyCity model even where COCO weights could be downloaded.
* ``CITYSCAPES_DATASET``: the Cityscapes folder (``leftImg8bit/``, ``gtFine/``).
* ``COURSE_SAMPLE_VIDEO``: OpenCV's ``vtest.avi``, where ``make vtest`` did not put it.
* ``TORCH_HOME`` is torch hub's (the weights cache), read by torch itself.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import random
import sys
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import torch
from torch import nn

from course_lib.errors import BadInput, DeviceUnavailable

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


def offline() -> bool:
    """True when ``COURSE_OFFLINE=1``: the chapters use the ToyCity model, never downloaded weights."""
    return os.environ.get("COURSE_OFFLINE", "0") == "1"


def cityscapes_folder() -> Path | None:
    """The folder ``CITYSCAPES_DATASET`` names (``~`` expanded), complete or not; None when it is unset."""
    root = os.environ.get("CITYSCAPES_DATASET")
    return Path(root).expanduser() if root else None


def cityscapes_root() -> Path | None:
    """:func:`cityscapes_folder` if it holds ``leftImg8bit`` and ``gtFine``, else None."""
    path = cityscapes_folder()
    return path if path is not None and (path / "leftImg8bit").is_dir() and (path / "gtFine").is_dir() else None


#: OpenCV's sample street video (real pedestrians, 768x576), as Debian's ``opencv-doc`` installs it.
SAMPLE_VIDEO = Path("usr/share/doc/opencv-doc/examples/data/vtest.avi")
#: Where ``make vtest`` unpacks ``opencv-doc``: ``.cache/`` of the checkout (course_lib/ -> its root).
SAMPLE_VIDEO_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "opencv-doc"


def sample_video_candidates() -> list[Path]:
    """Where OpenCV's ``vtest.avi`` may be, first choice first: ``$COURSE_SAMPLE_VIDEO``, the
    checkout's ``.cache/opencv-doc`` (``make vtest`` puts it there), the installed ``opencv-doc``."""
    chosen = os.environ.get("COURSE_SAMPLE_VIDEO")
    defaults = [SAMPLE_VIDEO_CACHE / SAMPLE_VIDEO, Path("/") / SAMPLE_VIDEO]
    return [Path(chosen).expanduser(), *defaults] if chosen else defaults


class CpuInfo(NamedTuple):
    """What ``/proc/cpuinfo`` says of the first CPU: its ``model`` name and its ISA ``flags``."""

    model: str
    flags: frozenset[str]


def cpu_info(path: str = "/proc/cpuinfo") -> CpuInfo | None:
    """The CPU's model name and flags from ``path`` (Linux's ``/proc/cpuinfo``); None where there is no such file.

    Only the first processor's block is read: every core of one machine reports the same. A block
    without a ``model name`` line (some ARM kernels) gives ``platform.processor()`` or the machine type.
    """
    try:
        with open(path) as f:
            first_block = f.read().split("\n\n", 1)[0]
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in first_block.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    model = fields.get("model name") or platform.processor() or platform.machine()
    return CpuInfo(model, frozenset(fields.get("flags", fields.get("Features", "")).split()))


def export_cache_dir() -> Path:
    """Where exported and calibrated models are kept between runs (:mod:`course_lib.deploy.cache`):
    ``COURSE_EXPORT_CACHE`` if set, else ``course_lib_exports`` beside the downloaded weights, in torch
    hub's folder (which honours ``TORCH_HOME``): never among the user's own files."""
    return Path(os.environ.get("COURSE_EXPORT_CACHE") or Path(torch.hub.get_dir()) / "course_lib_exports").expanduser()


def cpu_has_bf16_units() -> bool | None:
    """Whether the CPU computes bfloat16 natively (AMX or AVX512-BF16 flags); None if unknown (not Linux)."""
    info = cpu_info()
    return None if info is None else bool({"amx_bf16", "avx512_bf16"} & info.flags)


#: The variables by which ``torchrun`` (and ``--processes``) place a training process in its group.
PROCESS_GROUP_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclasses.dataclass(frozen=True)
class ProcessPlace:
    """Where a launcher put this process: its ``rank`` of ``world_size`` in all, ``local_rank`` on its machine
    (its GPU), and rank 0's ``master_addr:master_port``, where the processes meet (``env://`` rendezvous)."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


def process_place() -> ProcessPlace | None:
    """This process's :class:`ProcessPlace` from ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
    ``MASTER_PORT``; None when none is set (not launched). Refuses a partial or inconsistent set in one line."""
    values = {name: os.environ.get(name, "") for name in PROCESS_GROUP_VARIABLES}
    if not any(values.values()):
        return None
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise BadInput(f"{', '.join(missing)} not set while {', '.join(n for n in values if n not in missing)} are: start "
                       "the training processes with torchrun (it sets all five), or unset them")
    numbers = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        try:
            numbers[name] = int(values[name])
        except ValueError:
            raise BadInput(f"{name}={values[name]} is not a whole number: start the training processes with torchrun") from None
    if not 0 <= numbers["RANK"] < numbers["WORLD_SIZE"] or numbers["LOCAL_RANK"] < 0 or not 0 < numbers["MASTER_PORT"] < 65536:
        raise BadInput(f"RANK={numbers['RANK']}, WORLD_SIZE={numbers['WORLD_SIZE']}, LOCAL_RANK={numbers['LOCAL_RANK']}, "
                       f"MASTER_PORT={numbers['MASTER_PORT']} do not go together (0 <= RANK < WORLD_SIZE, a port 1-65535): "
                       "start the training processes with torchrun")
    return ProcessPlace(numbers["RANK"], numbers["WORLD_SIZE"], numbers["LOCAL_RANK"], values["MASTER_ADDR"], numbers["MASTER_PORT"])


def set_process_place(place: ProcessPlace) -> None:
    """Set this process's launcher variables as ``torchrun`` would (``--processes`` starts its workers so)."""
    os.environ.update(RANK=str(place.rank), WORLD_SIZE=str(place.world_size), LOCAL_RANK=str(place.local_rank),
                      MASTER_ADDR=place.master_addr, MASTER_PORT=str(place.master_port))
