"""course_lib.tracking.annotate: reading, writing, drawing, and the ``python -m course_lib video`` command."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from course_lib.cli import video
from course_lib.tracking import annotate, video_io


def frame_count_and_size(path) -> tuple[int, tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    count = 0
    size = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
    while capture.read()[0]:
        count += 1
    capture.release()
    return count, size


@pytest.fixture(scope="module")
def toycity_mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    return video_io.write_toycity_clip(path, seed=1, num_frames=6, height=128, width=256)


@pytest.fixture
def small_model(monkeypatch, untrained_toycity_model):
    """The CLI with an untrained ToyCity-sized model: tests the plumbing, not the detections."""
    model = untrained_toycity_model
    monkeypatch.setattr("course_lib.zoo.from_command_line", lambda *args, **kwargs: model)
    return model


def test_toycity_clip_round_trips_through_mp4(toycity_mp4):
    path, targets = toycity_mp4
    assert frame_count_and_size(path) == (6, (128, 256))
    frames = list(video_io.read_frames(path))
    assert len(frames) == 6 and frames[0].shape == (128, 256, 3) and frames[0].dtype == np.uint8
    assert len(targets) == 6 and "track_ids" in targets[0]


@pytest.mark.parametrize("track", [False, True])
def test_cli_writes_a_playable_side_by_side_video(toycity_mp4, small_model, tmp_path, track):
    out = tmp_path / "out.mp4"
    argv = [str(toycity_mp4[0]), str(out), "--min-score", "0.0"] + (["--track"] if track else [])
    assert video.cli(argv) == 0
    assert frame_count_and_size(out) == (6, (128, 2 * 256 + 4))


def test_cli_reads_a_frame_folder_and_writes_a_gif(toycity_mp4, small_model, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(video_io.read_frames(toycity_mp4[0])):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out.gif"
    assert video.cli([str(folder), str(out), "--track", "--max-frames", "3", "--no-side-by-side"]) == 0
    from PIL import Image

    with Image.open(out) as gif:
        assert gif.n_frames == 3 and gif.size == (256, 128)


def test_cli_toycity_writes_an_input_clip(tmp_path):
    assert video.cli(["--toycity", str(tmp_path / "c.mp4"), "--frames", "3"]) == 0
    assert frame_count_and_size(tmp_path / "c.mp4")[0] == 3


def test_bad_inputs_get_clear_errors(tmp_path, small_model, capsys):
    with pytest.raises(FileNotFoundError, match="no such video"):
        next(video_io.read_frames(tmp_path / "missing.mp4"))
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("this is text, not a video")
    with pytest.raises(ValueError, match="cannot decode"):
        next(video_io.read_frames(not_a_video))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no frames here")
    with pytest.raises(ValueError, match="no frames"):
        next(video_io.read_frames(empty))
    from course_lib.cli import main

    assert main(["video", str(not_a_video), str(tmp_path / "out.mp4")]) == 2
    assert "cannot decode" in capsys.readouterr().err


def test_draw_instances_colours_masks_by_track():
    from course_lib.tracking.track import track_color

    image = np.zeros((20, 30, 3), np.uint8)
    masks = torch.zeros(1, 20, 30)
    masks[0, 5:15, 5:15] = 1
    result = {"boxes": torch.tensor([[5.0, 5, 15, 15]]), "labels": torch.tensor([3]), "scores": torch.ones(1),
              "masks": masks, "track_ids": torch.tensor([4])}
    drawn = annotate.draw_instances(image, result, alpha=1.0)
    assert tuple(drawn[10, 10]) == track_color(4)
    assert tuple(drawn[1, 1]) == (0, 0, 0)
    assert annotate.side_by_side(image, drawn).shape == (20, 64, 3)
