"""Video files verified both ways: a clip cut short is an error, not a shorter output with exit code 0,
and a written video is reopened and counted before it takes the output's name (OpenCV's writer
reports no write errors). A full disk is a real 2 MB tmpfs (root only: skipped where ``mount`` fails).

Through ``python -m course_lib video`` (in-process) and the library calls; every failure is one
``error:`` line (exit code 2) and leaves every earlier file byte-identical (sha256 snapshots).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_bad_input import one_error_line, small_model, snapshot, write_frames  # noqa: F401 (small_model: a fixture)

from course_lib.cli import main
from course_lib.errors import BadInput, DiskFull
from course_lib.tracking import video_io


def noise(count: int, height: int = 64, width: int = 128, seed: int = 0) -> list[np.ndarray]:
    """Random RGB frames: they compress badly, so a few fill a small disk."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (height, width, 3), np.uint8) for _ in range(count)]


def write_avi(path: Path, frames: list[np.ndarray]) -> Path:
    """An MJPG AVI: its header declares the frame count and its frames follow, so a cut file still opens."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def mount_tmpfs(folder: Path, options: str) -> None:
    """Mount a tmpfs with ``options`` at ``folder``; skip the test, with the reason, where that is not allowed."""
    folder.mkdir()
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command here to make a small or read-only disk")
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs ({options}) here (needs root): {result.stderr.strip()}")


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB tmpfs at ``tmp_path / "disk"``, unmounted afterwards."""
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=2m")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` up to ``leave`` free bytes."""
    (disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(disk).free - leave))


# --------------------------------------------------------------------------- reading a clip cut short


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_a_clip_cut_short_is_an_error_naming_the_frame(tmp_path, small_model, capsys, keep):
    clip = write_avi(tmp_path / "clip.avi", noise(12))
    clip.write_bytes(clip.read_bytes()[:int(clip.stat().st_size * keep)])
    capture = cv2.VideoCapture(str(clip))
    decodable = sum(1 for _ in iter(capture.grab, False))
    capture.release()
    assert 0 < decodable < 12, "the cut must leave a clip that opens and ends early"
    out = tmp_path / "out.mp4"
    video_io.write_mp4(noise(2), out, 10)  # an earlier result
    before = snapshot(tmp_path)
    assert main(["video", str(clip), str(out)]) == 2
    assert f"decoding stopped after frame {decodable} of the 12 the file declares" in one_error_line(capsys)
    assert snapshot(tmp_path) == before
    with pytest.raises(BadInput, match=f"after frame {decodable} of the 12"):
        list(video_io.read_frames(clip))


def test_max_frames_stops_reading_before_the_cut(tmp_path, small_model):
    clip = write_avi(tmp_path / "clip.avi", noise(12))
    clip.write_bytes(clip.read_bytes()[:clip.stat().st_size // 2])
    out = tmp_path / "out.mp4"
    assert main(["video", str(clip), str(out), "--max-frames", "3", "--no-side-by-side"]) == 0
    capture = cv2.VideoCapture(str(out))
    assert sum(1 for _ in iter(capture.grab, False)) == 3
    capture.release()


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_a_whole_clip_reads_every_frame_without_a_word(tmp_path, capsys, suffix):
    frames = noise(7)
    path = write_avi(tmp_path / "clip.avi", frames) if suffix == ".avi" else video_io.write_mp4(frames, tmp_path / "clip.mp4", 10)
    assert len(list(video_io.read_frames(path))) == 7 and capsys.readouterr().err == ""


# --------------------------------------------------------------------------- writing to a full disk


def test_a_full_disk_is_one_line_and_keeps_the_earlier_video(tmp_path, tiny_disk, small_model, capsys):
    out = tiny_disk / "out.mp4"
    video_io.write_mp4(noise(2), out, 10)  # an earlier result, small enough to fit
    write_frames(tmp_path / "frames", noise(12, 128, 256))
    fill(tiny_disk, leave=64 * 1024)
    before = snapshot(tmp_path)
    assert main(["video", str(tmp_path / "frames"), str(out)]) == 2
    assert "no space left on the disk of" in one_error_line(capsys)
    assert snapshot(tmp_path) == before  # the earlier out.mp4 byte for byte, and no temporary file left
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "out.mp4"]


def test_write_mp4_on_a_full_disk_raises_disk_full(tiny_disk):
    fill(tiny_disk, leave=32 * 1024)
    with pytest.raises(DiskFull, match="out.mp4 was not written"):
        video_io.write_mp4(noise(12, 128, 256), tiny_disk / "out.mp4", 10)
    assert [p.name for p in tiny_disk.iterdir()] == ["filler"]


def test_write_gif_on_a_full_disk_raises_disk_full(tiny_disk):
    (tiny_disk / "out.gif").write_bytes(b"an earlier result")
    fill(tiny_disk, leave=16 * 1024)
    with pytest.raises(DiskFull, match="out.gif was not written"):
        video_io.write_gif(noise(12, 128, 256), tiny_disk / "out.gif", 10)
    assert (tiny_disk / "out.gif").read_bytes() == b"an earlier result"
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "out.gif"]


# --------------------------------------------------------------------------- outputs that cannot be written


def test_a_read_only_output_folder_is_one_line_not_a_missing_encoder(tmp_path, small_model, capsys):
    read_only = tmp_path / "read_only"
    mount_tmpfs(read_only, "ro,size=1m")
    try:
        write_frames(tmp_path / "frames", noise(2))
        assert main(["video", str(tmp_path / "frames"), str(read_only / "out.mp4")]) == 2
        line = one_error_line(capsys)
        assert "cannot write" in line and "Read-only file system" in line and "encoder" not in line
        with pytest.raises(BadInput, match="Read-only file system"):
            video_io.write_mp4(noise(2), read_only / "out.mp4", 10)
    finally:
        subprocess.run(["umount", str(read_only)], check=True)


def test_a_folder_as_output_is_one_line_and_stays_a_folder(tmp_path, small_model, capsys):
    write_frames(tmp_path / "frames", noise(2))
    folder = tmp_path / "results.gif"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    assert main(["video", str(tmp_path / "frames"), str(folder)]) == 2
    assert "results.gif is a folder" in one_error_line(capsys)
    for write in (video_io.write_mp4, video_io.write_gif):
        with pytest.raises(BadInput, match="results.gif is a folder: give the video a file name"):
            write(noise(2), folder, 10)
    assert snapshot(tmp_path) == before and folder.is_dir()
