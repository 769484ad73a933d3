"""The mistakes a user can make, one exception type each, and what to do about them.

Every error here is a :class:`UserError`: its message is one line that names the file or option
and says what to do. ``python -m course_lib`` prints it as ``error: <message>`` and exits with
code 2 instead of showing a traceback; called from Python, the library raises the same exception
with the same text. Each type also derives from the built-in exception it refines (``ValueError``,
``FileNotFoundError``, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """Base class: a problem with what the user gave, not a bug in the library."""


class BadInput(UserError, ValueError):
    """An input file or option value the course cannot use: a truncated image, frames of
    different sizes, an image too small or too large, a count of 0, a short sha256."""


class MissingData(UserError, FileNotFoundError):
    """A dataset, input file or folder that is absent or incomplete."""


class MissingPackage(UserError, ImportError):
    """An optional package a command needs is not installed (the message names the pip command)."""


class WouldOverwrite(UserError, FileExistsError):
    """Writing the output would replace the input or the results of an earlier run."""


class DeviceUnavailable(UserError, RuntimeError):
    """``COURSE_DEVICE`` names a device that is not one, or that torch does not see."""


class ResumeMismatch(UserError, ValueError):
    """``--resume`` with settings that differ from the ones the checkpoint was trained with."""


class UnreadableCheckpoint(UserError, ValueError):
    """A checkpoint file that is empty, cut short or not a checkpoint at all."""


class WeightsUnavailable(UserError, RuntimeError):
    """Weights cannot be found locally nor downloaded."""


class DiskFull(UserError, OSError):
    """The disk filled up while writing an output; the earlier file of that name is kept."""


class MachineBusy(UserError, RuntimeError):
    """A timing would be written from a machine busy with other work (load above its core count)."""
