"""Checkpoints that resume a run exactly: model, optimizer, schedule, step and every random state, written atomically."""

from __future__ import annotations

import contextlib
import os
import pickle
import random
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from course_lib.errors import ResumeMismatch, UnreadableCheckpoint, WouldOverwrite
from course_lib.utils.atomic import atomic_path

CHECKPOINT_NAME = "last.pt"


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


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically (:func:`course_lib.utils.atomic.atomic_path`).

    A crash while writing leaves the previous checkpoint untouched and removes the partial
    temporary file.
    """
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`~course_lib.engine.trainer.train` (it holds RNG states, hence ``weights_only=False``).

    Raises :class:`UnreadableCheckpoint` for an empty, truncated or foreign file (left as it is).
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except (EOFError, RuntimeError, pickle.UnpicklingError) as error:
        raise UnreadableCheckpoint(
            f"{path} is not a readable checkpoint ({str(error).splitlines()[0] or type(error).__name__}; empty or cut short?): "
            "move it away to start afresh, or resume from a copy of the run"
        ) from None


def check_new_run(folder: str | os.PathLike, resume: bool) -> None:
    """Raise :class:`WouldOverwrite` if ``folder`` already holds a run's files and ``resume`` is False."""
    existing = [name for name in RUN_FILES if (Path(folder) / name).exists()]
    if existing and not resume:
        raise WouldOverwrite(f"{folder} already holds a training run ({', '.join(existing)}): continue it with "
                             "--resume (resume=True), or give another output folder")


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
