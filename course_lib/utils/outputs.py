"""Outputs checked before any work starts, so a command never computes for minutes and then
fails to write, nor writes over what it reads.

Each command's contract: its result file (``video``'s OUTPUT, ``eval --json``, ``bench --out``,
``export --out``) replaces an earlier result of that name, atomically (:mod:`course_lib.utils.atomic`);
it is never a folder, never one of the command's inputs, never inside an input folder, and its
folder must be writable. A generated clip (``video --toycity``) and a training run's folder
(``train --out``, see :mod:`course_lib.engine.checkpoint`) never replace anything.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

from course_lib.errors import BadInput, WouldOverwrite


def check_output(path: str | os.PathLike, option: str, *, inputs: Iterable[str | os.PathLike | None] = (),
                 replace: bool = True) -> Path:
    """``path`` if a command may write its result there, else a one-line :class:`UserError`.

    Args:
        option: how the user named it (``"--json"``, ``"OUTPUT"``), for the message.
        inputs: the files and folders the command reads (``None`` entries and names that are not
            paths, such as ``toycity``, are skipped).
        replace: whether an existing file of that name may be replaced (the command's contract).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise BadInput(f"{option} {path} is a folder: give a file name (inside it, if you like)")
    for source in (Path(s).expanduser() for s in inputs if s is not None):
        if not source.exists():
            continue
        if path.resolve() == source.resolve():
            raise WouldOverwrite(f"{option} {path} is also this command's input: writing it would destroy it; give "
                                 "another output name")
        if source.is_dir() and path.resolve().is_relative_to(source.resolve()):
            raise WouldOverwrite(f"{option} {path} is inside the input folder {source}: it would replace or join the "
                                 "input; write it outside that folder")
    if path.exists() and not replace:
        raise WouldOverwrite(f"{option} {path} already exists and this command does not replace files: delete or "
                             "rename it, or give another name")
    check_writable_folder(path.parent, option)
    return path


def check_writable_folder(folder: str | os.PathLike, option: str) -> Path:
    """``folder`` if files can be created in it (or in the nearest existing folder above it, where it
    does not exist yet), else :class:`BadInput`. Tried with a real temporary file: permission bits say
    nothing about a read-only mount, nor to root."""
    folder = Path(folder).expanduser()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BadInput(f"{option}: {existing} is a file, so {folder} cannot be a folder: choose another location")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise BadInput(f"{option}: cannot write in {existing} ({error.strerror}): choose a writable folder") from None
    return folder
