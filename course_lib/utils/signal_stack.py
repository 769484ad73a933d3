"""The calling thread's alternate signal stack, kept across a library call that replaces it.

OpenVINO's CPU plugin (2026.4) gives the thread that compiles a model an alternate signal stack of
its own, and puts back the one before when that compiled model is destroyed. Compiled models
destroyed in another order than they were made (A, B, then A freed first), or on another thread,
leave the thread pointing at a stack that has been freed. The next signal the thread handles on it
(Ctrl-C, or the SIGCHLD that torch's DataLoader listens for when a child process ends) writes its
frame into freed memory: a segmentation fault, or memory quietly overwritten.

:func:`kept_signal_stack` around such a call gives the thread its own stack back at once, so
every compiled model remembers a stack that stays valid. Linux only: elsewhere it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from typing import Iterator


class _StackT(ctypes.Structure):
    """glibc's ``stack_t`` on Linux: ``ss_sp``, ``ss_flags``, ``ss_size``."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _sigaltstack(new: _StackT | None, old: _StackT | None) -> None:
    """libc's ``sigaltstack(new, old)`` for the calling thread; OSError if it refuses."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.sigaltstack(ctypes.byref(new) if new is not None else None, ctypes.byref(old) if old is not None else None) != 0:
        raise OSError(ctypes.get_errno(), "sigaltstack")


def current_signal_stack() -> tuple[int | None, int, int] | None:
    """The calling thread's alternate signal stack ``(address, flags, size)``; None where this is not Linux."""
    if not sys.platform.startswith("linux"):
        return None
    stack = _StackT()
    _sigaltstack(None, stack)
    return stack.ss_sp, stack.ss_flags, stack.ss_size


@contextlib.contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Run the block; then give the calling thread the alternate signal stack it had before the block."""
    if not sys.platform.startswith("linux"):
        yield
        return
    before = _StackT()
    _sigaltstack(None, before)
    try:
        yield
    finally:
        _sigaltstack(before, None)
