"""Command line: ``python -m course_lib {train,eval,bench,video} ...`` (``--help`` on each)."""

from __future__ import annotations

import importlib
import sys

#: subcommand -> module whose ``cli(argv) -> int`` runs it
COMMANDS = {
    "train": "course_lib.train",
    "eval": "course_lib.evaluate",
    "bench": "course_lib.bench",
    "video": "course_lib.video",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        print(__doc__.strip())
        print("commands:", ", ".join(COMMANDS))
        return 0 if not argv or argv[0] in {"-h", "--help"} else 2
    module = importlib.import_module(COMMANDS[argv[0]])
    from course_lib.errors import UserError

    try:
        return int(module.cli(argv[1:]) or 0)
    except UserError as error:  # a mistake in what was given: one line that says what to do, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
