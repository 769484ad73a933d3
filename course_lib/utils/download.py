"""Download one file over HTTP(S): progress bar, checksum, resume, atomic rename; the one file hasher.

The bytes go to ``DEST.part`` first and are renamed to ``DEST`` only once complete and verified,
so a crash or Ctrl-C never leaves a truncated file under the final name. A second call resumes the
``.part`` file with an HTTP ``Range`` request when the server honours it (status 206) and starts
over when it does not (status 200).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from course_lib.errors import BadInput

CHUNK_BYTES = 1 << 20

#: The shortest sha256 prefix accepted: torchvision names its weight files with the first 8 hex digits.
MIN_SHA256_DIGITS = 8

#: URL schemes :func:`download` fetches: urllib would also read ``file://`` (any file on the disk) and ``ftp://``.
SCHEMES = ("https", "http")


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks (works for files larger than memory)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(sha256: str) -> str:
    """``sha256`` lower-cased, if it is a hex digest or a prefix of at least 8 digits; else :class:`BadInput`
    (an empty or one-digit prefix would match almost any file)."""
    digits = str(sha256).strip().lower()
    if not MIN_SHA256_DIGITS <= len(digits) <= 64 or any(c not in "0123456789abcdef" for c in digits):
        raise BadInput(f"sha256={sha256!r} is not a sha256: give the file's full hex digest (64 digits, "
                       f"`sha256sum FILE`) or at least its first {MIN_SHA256_DIGITS}")
    return digits


def checksum_error(path: str | Path, sha256: str | None = None, md5: str | None = None) -> str | None:
    """None when ``path`` matches every given checksum, else a description of the mismatch.

    ``sha256`` may be a prefix of the digest (:func:`check_sha256`); ``md5`` is the whole digest.
    """
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected is not None:
            actual = file_digest(path, algorithm)
            matches = actual.startswith(expected) if algorithm == "sha256" else actual == expected.lower()
            if not matches:
                return f"{algorithm} is {actual}, expected {expected}"
    return None


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    progress: bool = True,
    *,
    md5: str | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest`` as a Path.

    ``sha256``: the file's hex digest or a prefix of at least 8 digits (:func:`check_sha256`). An existing ``dest`` that matches the given checksums (or any existing ``dest`` when none is
    given) is kept without touching the network. Raises ``ConnectionError`` when the server cannot
    be reached, ``ValueError`` on a checksum mismatch (the downloaded bytes are deleted) and
    :class:`BadInput` for a URL that is not one of :data:`SCHEMES`.
    """
    if urllib.parse.urlsplit(url).scheme.lower() not in SCHEMES:
        raise BadInput(f"{url}: not an https or http URL; downloads never read local files or other schemes")
    sha256 = None if sha256 is None else check_sha256(sha256)
    dest = Path(dest)
    if dest.exists() and checksum_error(dest, sha256, md5) is None:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0

    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416:  # 416: the .part file already holds every byte
            raise ConnectionError(f"{url} answered HTTP {error.code} {error.reason}") from error
        response = None
    except (urllib.error.URLError, OSError) as error:
        raise ConnectionError(
            f"cannot reach {url} ({getattr(error, 'reason', error)}); "
            f"on an offline machine, copy the file to {dest} by hand"
        ) from error

    if response is not None:
        with response:
            resumed = response.status == 206
            if not resumed:
                have = 0  # the server ignored Range and sends the whole file
            remaining = response.headers.get("Content-Length")
            total = have + int(remaining) if remaining is not None else None
            with open(part, "ab" if resumed else "wb") as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                desc=dest.name, disable=not progress,
            ) as bar:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
        # http.client ends a body cut short by a dropped connection without an error: check it.
        if total is not None and part.stat().st_size < total:
            raise ConnectionError(
                f"connection to {url} dropped after {part.stat().st_size} of {total} bytes; "
                f"run the same command again to resume from {part}"
            )

    mismatch = checksum_error(part, sha256, md5)
    if mismatch is not None:
        part.unlink()
        raise ValueError(
            f"checksum mismatch for {url}: {mismatch}; the partial file {part} was deleted, "
            "run the download again (if it keeps failing, the file on the server changed)"
        )
    os.replace(part, dest)  # atomic on one file system: dest is either absent or complete
    return dest
