"""Write files so that nothing the user had is ever half-replaced.

Every output goes to a temporary name in the destination's folder and is renamed over the
destination only once complete (``os.replace``: atomic on POSIX and Windows within one file
system). A crash, Ctrl-C or error while writing leaves the earlier file, if any, untouched and
removes the temporary one.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import secrets
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it replaces ``path``.

    The temporary name keeps ``path``'s suffix (``.mp4``, ``.gif``, ...), since writers such as
    OpenCV and Pillow choose the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():  # not unlink(missing_ok=True): on a read-only disk that fails, hiding the real error
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``Path(path).write_text(text)``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (also NumPy's) replaced by ``None``, recursively."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def write_json(path: str | os.PathLike, data: Any, indent: int = 1) -> Path:
    """``data`` as strict JSON, atomically: an undefined (NaN) metric is written as ``null``,
    since ``NaN`` is not JSON and most readers refuse it. Other non-JSON values go through ``float``."""
    return write_text(path, json.dumps(_finite(data), indent=indent, default=float, allow_nan=False) + "\n")
