"""Weights files: where they are cached, and downloading them once (the transfer and the hashing: :mod:`course_lib.utils.download`)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import torch

from course_lib.errors import WeightsUnavailable
from course_lib.utils.download import check_sha256, checksum_error, download


def weights_dir() -> Path:
    """Where downloaded weights are cached: torch hub's ``checkpoints`` folder (honours ``TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def fetch(url: str, sha256: str | None, filename: str | None = None, progress: bool = True) -> Path:
    """Return the cached file for ``url`` in :func:`weights_dir`, downloading and verifying it first if needed.

    ``sha256`` is the file's hex digest or a prefix of it (torchvision names its weight files with
    the first 8 hex digits, e.g. ``..._coco-bf2d0c1e.pth``). ``None`` only where the publisher gives
    no checksum (Detectron2's model zoo): the caller must then check the file's structure itself.
    The transfer is :func:`course_lib.utils.download.download`'s (a ``.part`` file renamed into
    place once verified), so an interrupted or corrupt download never looks like a cached file. A
    cached file that does not match is reported, never replaced: it may be the user's own.
    """
    sha256 = None if sha256 is None else check_sha256(sha256)
    destination = weights_dir() / (filename or Path(urllib.request.urlparse(url).path).name)
    if destination.exists():
        if checksum_error(destination, sha256) is None:
            return destination
        raise WeightsUnavailable(
            f"cached file {destination} does not match its sha256 {sha256}: delete it and load again"
        )
    try:
        return download(url, destination, sha256=sha256, progress=progress)
    except ConnectionError as error:
        reason = getattr(error.__cause__, "reason", None) or error  # the server's or the socket's words
        raise WeightsUnavailable(
            f"cannot download {url} ({reason}). Connect to the internet, or copy the file to "
            f"{destination} by hand; offline, use the ToyCity model: course_lib.zoo.load('toycity')"
        ) from None
    except ValueError as error:  # download's checksum mismatch; it deleted the bytes
        raise WeightsUnavailable(
            f"downloaded {url} but its sha256 does not match {sha256} ({error}); the partial file "
            "was removed: try again, and check the URL if it keeps failing"
        ) from None


def reachable(url: str, timeout: float = 3.0) -> bool:
    """True if a HEAD request to ``url`` answers (used to report, never to decide a result)."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False
