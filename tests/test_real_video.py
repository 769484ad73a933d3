"""Real pixels: the video command and the tracker on OpenCV's sample street video (vtest.avi).

``make test`` fetches it from Debian's ``opencv-doc`` into ``.cache/`` (``make vtest``); where that
is impossible these tests skip and say so. The video and its frames are never committed.
"""

from __future__ import annotations

import itertools

import cv2
import pytest

from course_lib import zoo
from course_lib.cli import main
from course_lib.tracking import pipeline, video_io

SAMPLE = video_io.sample_video()
pytestmark = pytest.mark.skipif(
    SAMPLE is None, reason="vtest.avi not found: run `make vtest` (apt-get download opencv-doc) or set COURSE_SAMPLE_VIDEO")


def test_sample_video_is_a_real_street():
    frames = list(itertools.islice(video_io.read_frames(SAMPLE), 3))
    assert frames[0].shape == (576, 768, 3) and frames[0].dtype.name == "uint8"
    assert video_io.frames_per_second(SAMPLE) > 1
    assert frames[0].std() > 10, "real pixels, not a blank frame"


def test_video_command_tracks_the_sample(tmp_path, capsys):
    out = tmp_path / "vtest_tracked.mp4"
    assert main(["video", str(SAMPLE), str(out), "--track", "--max-frames", "3"]) == 0
    assert "vtest.avi" in capsys.readouterr().out
    capture = cv2.VideoCapture(str(out))
    written = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    capture.release()
    assert written == (3, 2 * 768 + 4), "three frames, input and result side by side"


def test_tracker_on_the_sample_keeps_ids_consistent():
    """Whatever the ToyCity model finds on real pixels, the tracker's output is well formed."""
    model = zoo.load("toycity", device="cpu")
    frames = itertools.islice(video_io.read_frames(SAMPLE), 4)
    results = [result for _, result, _ in pipeline.annotate(frames, pipeline.eager_detector(model), track=True, batch_size=2)]
    assert len(results) == 4
    for result in results:
        ids = result["track_ids"].tolist()
        assert len(ids) == len(set(ids)) == len(result["labels"]) == len(result["boxes"])
        if len(ids):
            assert result["masks"].shape[-2:] == (576, 768)
