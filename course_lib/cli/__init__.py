"""Command line: ``python -m course_lib {train,eval,bench,video,export} ...`` (``--help`` on each).

Every ``argparse`` of the project lives in this package; the library modules take plain arguments."""

from __future__ import annotations

import errno
import gc
import importlib
import sys
from types import ModuleType

from course_lib.errors import UserError

#: subcommand -> module whose ``cli(argv) -> int`` runs it
COMMANDS = {
    "train": "course_lib.cli.train",
    "eval": "course_lib.cli.evaluate",
    "bench": "course_lib.cli.bench",
    "video": "course_lib.cli.video",
    "export": "course_lib.cli.export",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        print(__doc__.strip())
        print("commands:", ", ".join(COMMANDS))
        return 0 if not argv or argv[0] in {"-h", "--help"} else 2
    command = _imported(COMMANDS[argv[0]]).cli
    try:
        return int(command(argv[1:]) or 0)
    except UserError as error:  # a mistake in what was given: one line that says what to do, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        # outputs are written to a temporary name first (course_lib.utils.atomic): the earlier file is intact
        print(f"error: no space left on the disk writing {error.filename or 'an output'}: free some space or write "
              "elsewhere (earlier files of the same name are kept)", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # Ctrl-C: training saved its checkpoint at the end of the step
        print(f"interrupted: {interrupt}" if str(interrupt) else "interrupted", file=sys.stderr)
        return 130
    finally:
        gc.unfreeze()  # what _imported froze is collected at exit again: extension modules report what never was


def _imported(name: str) -> ModuleType:
    """Module ``name``, imported with Python's cycle collector paused, and what the import made frozen.

    A command's first import (torch, torchvision, OpenVINO) makes about a million objects that live until
    the process ends; the collector's passes over them during and after the import took about 0.7 s of
    a 6 s ``video`` command on a 2-core CPU. Frozen (``gc.freeze``) until the command returns, the
    passes in between skip them.
    """
    if name in sys.modules:
        return sys.modules[name]
    collecting = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
