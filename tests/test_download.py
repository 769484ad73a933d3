"""course_lib.utils.download against a loopback HTTP server (127.0.0.1, never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from course_lib.errors import BadInput
from course_lib.utils.download import download

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB, spans several read chunks


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at any path. Class attributes switch Range support and early hang-ups."""

    honour_range = True
    cut_after: int | None = None  # send only this many bytes, then close the connection
    requests: list[str | None] = []  # the Range header of every request, in order

    def do_GET(self) -> None:
        range_header = self.headers.get("Range")
        type(self).requests.append(range_header)
        start = 0
        if range_header and self.honour_range:
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if self.cut_after is None else body[: self.cut_after])
        self.close_connection = True

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server():
    """Yield (base_url, handler_class); each test gets a fresh handler class with its own state."""
    handler = type("TestHandler", (Handler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_writes_verified_file_and_no_part(server, tmp_path: Path):
    url, handler = server
    dest = download(f"{url}/file.bin", tmp_path / "sub" / "file.bin", sha256=SHA256, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "sub" / "file.bin.part").exists()
    assert handler.requests == [None]


def test_existing_verified_file_is_not_downloaded_again(server, tmp_path: Path):
    url, handler = server
    dest = tmp_path / "file.bin"
    dest.write_bytes(PAYLOAD)
    download(f"{url}/file.bin", dest, sha256=SHA256, progress=False)
    assert handler.requests == []


def test_dropped_connection_keeps_part_and_next_call_resumes_with_range(server, tmp_path: Path):
    url, handler = server
    dest = tmp_path / "file.bin"
    handler.cut_after = 300_000
    with pytest.raises(ConnectionError, match="run the same command again to resume"):
        download(f"{url}/file.bin", dest, sha256=SHA256, progress=False)
    part = tmp_path / "file.bin.part"
    assert part.stat().st_size == 300_000 and not dest.exists()

    handler.cut_after = None
    download(f"{url}/file.bin", dest, sha256=SHA256, progress=False)
    assert handler.requests == [None, "bytes=300000-"]
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_server_without_range_support_restarts_from_zero(server, tmp_path: Path):
    url, handler = server
    handler.honour_range = False
    (tmp_path / "file.bin.part").write_bytes(b"stale bytes from another file")
    dest = download(f"{url}/file.bin", tmp_path / "file.bin", sha256=SHA256, progress=False)
    assert handler.requests == ["bytes=29-"]
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_answered_416_is_verified_and_renamed(server, tmp_path: Path):
    url, handler = server
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD)
    dest = download(f"{url}/file.bin", tmp_path / "file.bin", md5=hashlib.md5(PAYLOAD).hexdigest(),
                    progress=False)
    assert handler.requests == [f"bytes={len(PAYLOAD)}-"]
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_partial_file_and_says_so(server, tmp_path: Path):
    url, _ = server
    dest = tmp_path / "file.bin"
    with pytest.raises(ValueError, match="checksum mismatch.*was deleted"):
        download(f"{url}/file.bin", dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and not (tmp_path / "file.bin.part").exists()


def test_unreachable_server_says_copy_by_hand(tmp_path: Path):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "file.bin"
    with pytest.raises(ConnectionError) as error:
        download(f"http://127.0.0.1:{port}/file.bin", dest, progress=False, timeout=5)
    message = str(error.value)
    assert message.startswith("cannot reach http://127.0.0.1:")
    assert f"copy the file to {dest} by hand" in message and "\n" not in message


def test_a_sha256_prefix_of_8_digits_is_enough_and_a_shorter_one_is_refused(server, tmp_path: Path):
    url, handler = server
    dest = download(f"{url}/file.bin", tmp_path / "file.bin", sha256=SHA256[:8].upper(), progress=False)
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(ValueError, match="checksum mismatch"):  # a prefix of another digest
        download(f"{url}/file.bin", tmp_path / "other.bin", sha256=SHA256[1:9], progress=False)
    for digest in ("", SHA256[:7], "not-hex!", SHA256 + "0"):
        with pytest.raises(BadInput, match="at least its first 8"):
            download(f"{url}/file.bin", tmp_path / "third.bin", sha256=digest, progress=False)
    assert len(handler.requests) == 2  # refused digests never reach the network


def test_zoo_fetch_uses_this_download_and_never_replaces_a_cached_file(server, tmp_path: Path, monkeypatch):
    from course_lib.errors import WeightsUnavailable
    from course_lib.zoo import files

    url, handler = server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    path = files.fetch(f"{url}/weights.pth", SHA256[:8], progress=False)  # a prefix, as torchvision's file names hold
    assert path.parent == files.weights_dir() and path.read_bytes() == PAYLOAD
    handler.cut_after = 1000  # a dropped connection becomes one line that says what to do
    with pytest.raises(WeightsUnavailable, match="cannot download .*copy the file to .* by hand"):
        files.fetch(f"{url}/cut.pth", SHA256, progress=False)
    assert (files.weights_dir() / "cut.pth.part").stat().st_size == 1000  # kept: the next call resumes it
    handler.cut_after = None
    assert files.fetch(f"{url}/cut.pth", SHA256, progress=False).read_bytes() == PAYLOAD
    assert handler.requests[-1] == "bytes=1000-"
    path.write_bytes(b"the user's own file")
    with pytest.raises(WeightsUnavailable, match="delete it"):
        files.fetch(f"{url}/weights.pth", SHA256, progress=False)
    assert path.read_bytes() == b"the user's own file"
