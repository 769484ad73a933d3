"""Checkpoints that resume a run exactly: model, optimizer, schedule, step and every random state, written atomically."""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

try:
    import fcntl
except ImportError:  # Windows: no flock, run folders go unlocked there
    fcntl = None

from course_lib.errors import BadInput, DiskFull, MissingData, ResumeMismatch, UnreadableCheckpoint, WouldOverwrite
from course_lib.utils.atomic import atomic_path
from course_lib.utils.outputs import check_writable_folder

CHECKPOINT_NAME = "last.pt"
#: The lock file that keeps a second run out of a run folder (:func:`claimed_run_folder`).
LOCK_NAME = ".lock"


#: What a training run writes into its folder (the command line adds the last two).
RUN_FILES = (CHECKPOINT_NAME, "model.pt", "history.json")


def rng_state() -> dict[str, Any]:
    """Snapshot of every random number generator the loop touches."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a side task (evaluation, logging) without moving the training RNG streams."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


#: What a checkpoint may hold besides tensors and plain containers: NumPy's RNG state (a uint32
#: array). ``torch.load(weights_only=True)`` refuses every other class, and so any code a pickle carries.
NUMPY_RNG_GLOBALS = [np.dtype, np.ndarray, np.ndarray.__reduce__(np.zeros(1))[0], type(np.dtype(np.uint32))]


def save_checkpoint(state: Any, path: str | os.PathLike) -> Path:
    """``torch.save(state, path)`` atomically (:func:`course_lib.utils.atomic.atomic_path`).

    A crash while writing leaves the previous file untouched and removes the partial temporary
    file; a full disk raises :class:`DiskFull` (torch reports it as a ``RuntimeError``).
    """
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except (OSError, RuntimeError) as error:
        if not _is_disk_full(error):
            raise
        raise DiskFull(f"no space left on the disk to write {path} ({shutil.disk_usage(path.parent).free / 1e6:.1f} MB "
                       f"free, {path.name} is kept as it was): free some space or write elsewhere") from None
    return path


def _is_disk_full(error: BaseException) -> bool:
    """True for the errors a full disk gives ``torch.save``: ENOSPC, or its zip writer's short write."""
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    return "unexpected pos" in str(error) or "PytorchStreamWriter failed writing" in str(error)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Load a file written by ``torch.save``: a training checkpoint or a bare state dict.

    Loaded with ``weights_only=True``: tensors, numbers, strings, containers and NumPy's RNG
    state only, so a file that carries code (a pickled object whose ``__reduce__`` runs a
    command) is refused before anything in it runs.

    Raises :class:`UnreadableCheckpoint` for a missing, empty, truncated or foreign file, or one
    holding other objects (each left as it is).
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableCheckpoint(f"{path}: no such checkpoint file: check the path")
    try:
        with torch.serialization.safe_globals(NUMPY_RNG_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        if refused:
            raise UnreadableCheckpoint(
                f"{path} holds a Python object ({refused.group(1)}), not only weights: loading it could run code, so it "
                "is refused; load weights only from a file you trust, saved as a state dict (torch.save(model.state_dict(), ...))"
            ) from None
        raise _unreadable(path, error) from None
    except (EOFError, RuntimeError, ValueError, IsADirectoryError) as error:
        raise _unreadable(path, error) from None


def _unreadable(path: Path, error: BaseException) -> UnreadableCheckpoint:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = next((line for line in lines if line.startswith("Unsupported")), lines[0] if lines else type(error).__name__)
    return UnreadableCheckpoint(f"{path} is not a readable checkpoint ({detail}: empty, cut short, or not written by "
                                "torch.save): give an intact copy, or move it away to start afresh")


def check_new_run(folder: str | os.PathLike, resume: bool) -> None:
    """Raise :class:`WouldOverwrite` if ``folder`` already holds a run's files and ``resume`` is False,
    and :class:`MissingData` if ``resume`` is True but it holds no checkpoint (a mistyped folder
    would otherwise start a fresh run)."""
    existing = [name for name in RUN_FILES if (Path(folder) / name).exists()]
    if existing and not resume:
        raise WouldOverwrite(f"{folder} already holds a training run ({', '.join(existing)}): continue it with "
                             "--resume (resume=True), or give another output folder")
    if resume and CHECKPOINT_NAME not in existing:
        raise MissingData(f"--resume: {folder} holds no {CHECKPOINT_NAME} to continue from: check the folder name, or "
                          "leave out --resume to start a new run")


@contextlib.contextmanager
def claimed_run_folder(folder: str | os.PathLike, resume: bool) -> Iterator[Path]:
    """Hold ``folder`` for one training run while the block runs.

    Checks it (:func:`check_new_run`, writable, not a file) and locks it: ``fcntl.flock`` on
    ``folder/.lock``, so a second run started into the same folder stops with one line instead of
    both writing ``last.pt`` and mixing their TensorBoard logs. The lock goes with the process,
    also when it is killed. The lock file is removed again when the run ends (kept if it was there before),
    and so is a folder created here if the run leaves nothing in it.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"--out {folder} is a file: training writes a folder (last.pt, model.pt, ...); give another name")
    check_writable_folder(folder, "--out")
    check_new_run(folder, resume)  # refused here, nothing is created; checked again under the lock
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / LOCK_NAME
    with _locked(lock_path, folder) as (lock, lock_created):
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            check_new_run(folder, resume)
            yield folder
        finally:
            # removed while still locked: a run that opened the file meanwhile finds it unlinked and opens it afresh
            if lock_created:
                lock_path.unlink()
            if created and not any(folder.iterdir()):  # a run that wrote nothing
                folder.rmdir()


@contextlib.contextmanager
def _locked(lock_path: Path, folder: Path) -> Iterator[tuple[Any, bool]]:
    """``lock_path`` opened and held with ``fcntl.flock``, and whether it was created here; refused in one line
    while another run holds it."""
    while True:
        lock_created = not lock_path.exists()
        with open(lock_path, "a+") as lock:
            try:
                if fcntl is not None:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                raise WouldOverwrite(f"{folder} is in use by another training run (process {lock.read().strip() or '?'}): "
                                     "wait for it to end, or give another output folder") from None
            if _same_file(lock, lock_path):  # else the run before removed it between our open and flock: again
                yield lock, lock_created
                return


def _same_file(handle: Any, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def check_same_settings(checkpoint: Path, saved: dict[str, Any], settings: dict[str, Any]) -> None:
    """Raise :class:`ResumeMismatch` if a resumed run asks for other settings than its checkpoint's.

    The optimizer and schedule states in the checkpoint would silently override a new learning
    rate, and a new seed, batch size or step count would change the batch order or the schedule.
    """
    changed = [name for name in settings if name in saved and saved[name] != settings[name]]
    if changed:
        was = ", ".join(f"{name}={saved[name]}" for name in changed)
        now = ", ".join(f"{name}={settings[name]}" for name in changed)
        raise ResumeMismatch(f"{checkpoint} was trained with {was}; this run asks for {now}: resume with the "
                             "checkpoint's settings, or start afresh in another folder")
