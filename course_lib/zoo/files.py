"""Weights files: where they are cached, their sha256, and downloading them once."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

import torch

from course_lib.errors import BadInput, WeightsUnavailable

#: The shortest sha256 prefix accepted: torchvision names its weight files with the first 8 hex digits.
MIN_SHA256_DIGITS = 8


def weights_dir() -> Path:
    """Where downloaded weights are cached: torch hub's ``checkpoints`` folder (honours ``TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def sha256_of(path: Path) -> str:
    """Hex sha256 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(sha256: str) -> str:
    """``sha256`` lower-cased, if it is a hex digest or a prefix of at least 8 digits; else :class:`BadInput`
    (an empty or one-digit prefix would match almost any file)."""
    digits = str(sha256).strip().lower()
    if not MIN_SHA256_DIGITS <= len(digits) <= 64 or any(c not in "0123456789abcdef" for c in digits):
        raise BadInput(f"sha256={sha256!r} is not a sha256: give the file's full hex digest (64 digits, "
                       f"`sha256sum FILE`) or at least its first {MIN_SHA256_DIGITS}")
    return digits


def fetch(url: str, sha256: str | None, filename: str | None = None, progress: bool = True) -> Path:
    """Return the cached file for ``url``, downloading and verifying it first if needed.

    ``sha256`` is the file's hex digest or a prefix of it (torchvision names its weight files with
    the first 8 hex digits, e.g. ``..._coco-bf2d0c1e.pth``). ``None`` only where the publisher gives
    no checksum (Detectron2's model zoo): the caller must then check the file's structure itself. The download goes through
    ``torch.hub.download_url_to_file``, which writes a temporary file and renames it only after
    the checksum matched, so an interrupted or corrupt download never looks like a cached file.
    """
    sha256 = None if sha256 is None else check_sha256(sha256)
    destination = weights_dir() / (filename or Path(urllib.request.urlparse(url).path).name)
    if destination.exists():
        if sha256 is None or sha256_of(destination).startswith(sha256):
            return destination
        raise WeightsUnavailable(
            f"cached file {destination} does not match its sha256 {sha256}: delete it and load again"
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(destination), hash_prefix=sha256, progress=progress)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise WeightsUnavailable(
            f"cannot download {url} ({reason}). Connect to the internet, or copy the file to "
            f"{destination} by hand; offline, use the ToyCity model: course_lib.zoo.load('toycity')"
        ) from None
    except RuntimeError as error:  # torch.hub raises RuntimeError on a hash mismatch
        raise WeightsUnavailable(
            f"downloaded {url} but its sha256 does not match {sha256} ({error}); the partial file "
            "was removed: try again, and check the URL if it keeps failing"
        ) from None
    return destination


def reachable(url: str, timeout: float = 3.0) -> bool:
    """True if a HEAD request to ``url`` answers (used to report, never to decide a result)."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False
