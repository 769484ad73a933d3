# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Video demo: a street, frame by frame
#
# This chapter puts the week together on a video: read frames with OpenCV, run the ToyCity model
# on batches of frames, track the instances, draw each object in its track's colour with its id,
# and write the input and the result side by side as an MP4 and a GIF. Everything below is also
# one shell command:
#
# ```
# python -m course_lib video --toycity street.mp4              # write a ToyCity clip to use as input
# python -m course_lib video street.mp4 street_tracked.mp4 --track --variant det_20
# ```
#
# The same command works on your own video file or a folder of frames (`--model coco` uses the
# COCO-pretrained R50-FPN mapped to the urban classes, where its weights can be downloaded).

# %% tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else).
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)

# %%
import tempfile
import time
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Image, display

from course_lib import environment, zoo
from course_lib.deploy import eager
from course_lib.tracking import annotate, video_io
from course_lib.tracking.track import Tracker, tracks_to_frame

environment.seed_everything(0)
torch.set_num_threads(environment.pick(1, 2))
NUM_FRAMES = environment.pick(16, 75)
HEIGHT, WIDTH, FPS = 256, 512, 25
workdir = Path(tempfile.mkdtemp(prefix="week3_video_"))

# %% [markdown]
# ## An input video
#
# Offline, the input is a ToyCity clip written to an MP4 file with OpenCV's `mp4v` encoder. We read it
# back the way any video would be read, and check that every frame survived the trip.

# %%
source, targets = video_io.write_toycity_clip(workdir / "street.mp4", seed=3, num_frames=NUM_FRAMES,
                                           height=HEIGHT, width=WIDTH, fps=FPS)
frames = list(video_io.read_frames(source))
print(f"{source.name}: {len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]} at {video_io.frames_per_second(source):.0f} fps")
assert len(frames) == NUM_FRAMES and frames[0].shape == (HEIGHT, WIDTH, 3)

# %% [markdown]
# MPEG-4 compression is lossy: the decoded frames are close to the generated ones, not identical.
# The model sees what a camera pipeline would give it.

# %%
from course_lib.data.toycity import clip

original = clip(3, 1, HEIGHT, WIDTH, fps=FPS)[0][0]
error = np.abs(original.astype(int) - frames[0].astype(int))
print(f"mean absolute difference after MP4 round trip: {error.mean():.2f} grey levels (max {error.max()})")

# %% [markdown]
# ## Detect, track, draw
#
# `annotate.annotate` runs the model on batches of frames (`batch_size` frames per forward pass),
# passes each frame's detections (score >= 0.5) to the tracker, and draws the reported tracks.
# The `det_20` variant keeps at most 20 detections inside the model, and only those scoring at
# least 0.2, so the mask head does no work on detections that the 0.5 threshold would throw away
# anyway. We time the three parts separately.

# %%
model = zoo.load("toycity", device="cpu")
tracker = Tracker()
seconds = {"model": 0.0, "tracker": 0.0, "drawing": 0.0}
drawn = []
with eager.apply(model, "det_20"):
    start = time.perf_counter()
    for frame, detections in annotate.predict_frames(model, frames, batch_size=4):
        now = time.perf_counter()
        seconds["model"] += now - start
        result = tracks_to_frame(tracker.update(detections), HEIGHT, WIDTH)
        seconds["tracker"] += time.perf_counter() - now
        now = time.perf_counter()
        drawn.append(annotate.side_by_side(frame, annotate.draw_instances(frame, result)))
        seconds["drawing"] += time.perf_counter() - now
        start = time.perf_counter()
environment.print_banner("ToyCity model (course_lib.zoo.load('toycity')), variant det_20", f"ToyCity clip seed 3, {NUM_FRAMES} frames at {HEIGHT}x{WIDTH}")
for part, s in seconds.items():
    print(f"{part:>8}: {s / NUM_FRAMES * 1e3:6.1f} ms per frame")
print(f"end to end: {NUM_FRAMES / sum(seconds.values()):.1f} frames per second on {environment.device()}")

# %%
fig, axes = plt.subplots(3, 1, figsize=(12, 9))
for ax, t in zip(axes, [0, NUM_FRAMES // 2, NUM_FRAMES - 1]):
    ax.imshow(drawn[t])
    ax.set_title(f"frame {t}: input | tracked instances")
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Writing the result
#
# The MP4 is for sharing; the GIF is for pages like this one (every browser plays it, no codec
# needed), downscaled to keep it small.

# %%
mp4 = video_io.write_mp4(drawn, workdir / "street_tracked.mp4", FPS)
gif = video_io.write_gif(drawn, workdir / "street_tracked.gif", fps=FPS / 2, max_width=environment.pick(480, 800))
capture = cv2.VideoCapture(str(mp4))
written = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
capture.release()
print(f"{mp4.name}: {written[0]} frames, {written[1]} px wide, {mp4.stat().st_size / 1e3:.0f} kB | "
      f"{gif.name}: {gif.stat().st_size / 1e3:.0f} kB")
assert written == (NUM_FRAMES, 2 * WIDTH + 4)
display(Image(filename=str(gif)))

# %% [markdown]
# Things to look for in the animation: an object keeps its colour when another one passes in front
# of it; an object entering at the image edge gets its id one frame after it first appears
# (`min_hits = 2`); a small, far-away pedestrian may flicker in and out, because the detector finds
# it only in some frames.
#
# ## A real street
#
# OpenCV's documentation ships a short real video, `vtest.avi`: pedestrians crossing a campus
# square, filmed from above (Debian's `opencv-doc` package; `make test` fetches it into `.cache/`,
# and `course_lib.tracking.video_io.sample_video()` finds it). The model is the one the course inspects
# (`zoo.course_model()`). With COCO weights (Colab) this is the real demo: COCO has seen many such
# pedestrians. Offline it is the ToyCity model, which has never seen a real pixel, and what it
# finds here, or misses, is the **domain gap**: it learned people, cars and two-wheelers as
# flat-coloured shapes on a flat road, and real pedestrians in textured clothes on a textured square
# look like none of them (compare what it calls a person below with where the people are). A
# detector is only as good as the likeness of its training images to what it is shown; fine-tuning
# on real street images (Week 2) is how that gap is closed.

# %%
import itertools
from collections import Counter

from course_lib.classes import CLASSES

real_video = video_io.sample_video()
if real_video is None:
    print("OpenCV's vtest.avi is not here (`make vtest` fetches it, or set COURSE_SAMPLE_VIDEO): no real street")
else:
    real_model, real_name = zoo.course_model()
    real_frames = list(itertools.islice(video_io.read_frames(real_video), environment.pick(4, 60)))
    real_results = list(annotate.annotate(real_model.cpu().eval(), real_frames, Tracker(), batch_size=2))
    height, width = real_frames[0].shape[:2]
    environment.print_banner(real_name, f"OpenCV sample video {real_video.name}, first {len(real_frames)} frames, {width}x{height}")
    found = Counter(CLASSES[int(label)] for _, result, _ in real_results for label in result["labels"])
    print(f"tracked objects per frame: {[len(result['labels']) for _, result, _ in real_results]}")
    print(f"classes over all frames: {dict(found) or 'nothing'}")
    last_frame, _, last_drawing = real_results[-1]
    fig, ax = plt.subplots(figsize=(12, 4.5))
    ax.imshow(annotate.side_by_side(last_frame, last_drawing))
    ax.set_title(f"{real_video.name}, frame {len(real_frames) - 1}: input | {real_name}")
    ax.axis("off")
    plt.show()
    assert len(real_results) == len(real_frames) and real_frames[0].shape[2] == 3
    assert all(len(set(result["track_ids"].tolist())) == len(result["labels"]) for _, result, _ in real_results)

# %% [markdown]
# ## Exercises
#
# Each exercise asks for one small function and checks it on hand-picked and generated cases:
# empty inputs, single elements, exact ties at every threshold the task names, degenerate shapes and
# seeded random ones, with the expected value from the field's own code wherever it exists. While
# the body is still `raise NotImplementedError`, the check says "not attempted yet" and the notebook
# runs on; nothing later depends on your answer. A wrong answer stops with the first failing case
# (its input, the expected and the obtained value, or the exception it raised) and a hint; rerun
# your function on that input with `exercises.case("name", k)`. A right answer prints a ✓ line. The
# solution is one click away: the dropdown below each exercise on the site, or
# `exercises.solution("name")` in Jupyter and Colab.

# %% [markdown]
# **To explore** (no check): (1) Run the command line on the same clip without `--track` and compare the
# colours. (2) Try `--variant scale_0.5`: how many frames per second do you gain, and which objects
# disappear? (3) Record a short street video with your phone, and run it with `--model coco`
# (where the COCO weights can be downloaded).

# %% [markdown]
# ```{exercise} Blend a mask into a frame
# :label: exercise-overlay
#
# Write `overlay(image, mask, colour, alpha)`: a new `uint8` image `[3, H, W]` with the RGB
# `colour` (channel order `0, 1, 2`) blended at opacity `alpha` (`0` invisible, `1` opaque) over
# the pixels of the boolean `mask` `[H, W]`, the other pixels unchanged. Checked against
# `torchvision.utils.draw_segmentation_masks`, within one grey level of rounding.
# ```

# %%
import torch

from course_lib import exercises


def overlay(image, mask, colour, alpha):
    raise NotImplementedError  # your code here


exercises.check("overlay", overlay)

# %% [markdown]
# ````{solution} exercise-overlay
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/realtime.py
# :pyobject: overlay
# ```
# ````

# %% [markdown]
# ```{exercise} Which frames to process
# :label: exercise-kept_frames
#
# A live demo processes fewer frames than the camera delivers. Write `kept_frames(num_frames,
# source_fps, target_fps)`: the sorted indices of the frames to process so that the result plays at
# `target_fps` without drifting. Output frame `k`, due at time `k / target_fps`, shows the first
# source frame at or after that time, source frame $\lceil k s / t \rceil$ for $s$ = `source_fps` and
# $t$ = `target_fps` (each index once); equivalently, frame `i` is kept when $\lfloor i t / s \rfloor$
# steps up, frame `0` always. At a target rate at or above the source rate every frame is kept.
# Checked against that rule computed in exact fractions.
# ```

# %%
import math


def kept_frames(num_frames, source_fps, target_fps):
    raise NotImplementedError  # your code here


exercises.check("kept_frames", kept_frames)

# %% [markdown]
# ````{solution} exercise-kept_frames
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/realtime.py
# :pyobject: kept_frames
# ```
# ````
