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
# # Benchmarks
#
# The course's measured results, plotted from the JSON files its scripts committed under
# `course_lib/assets/results/`. Nothing here is recomputed: this page shows what was measured,
# where and on what, so it runs in seconds and cannot disagree with the chapters that produced the
# files. Each file states its model, its data and its device; the first cell prints them.
# To measure on your own machine, rerun the command each section prints and point the chapter at
# your file.

# %% tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else).
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from course_lib import results
from course_lib.viz import plots

training = results.load_results("toycity_training.json")
speed_run = results.load_results("bench_cpu.json")
tracker = results.load_results("tracker_cpu.json")
generation = results.load_results("toycity_speed.json")

for name, labels in (("toycity_training.json", f"{training['training']['val_scenes']}, CPU with {training['training']['threads']} threads"),
                     ("bench_cpu.json", f"{speed_run['model']} | {speed_run['data']} | {speed_run['device']}"),
                     ("tracker_cpu.json", f"ToyCity frames {tracker['frame_size']} | {tracker['device']}"),
                     ("toycity_speed.json", f"ToyCity scenes {generation['size']} | {generation['cpu_count']} CPUs, "
                                            f"OMP_NUM_THREADS={generation['omp_num_threads']}")):
    print(f"{name:<22} {labels}")

# %% [markdown]
# ## Training: accuracy against time
#
# Held-out mask and box AP (pycocotools) at each evaluation of the training run, against the time
# spent in optimiser steps (evaluation excluded), and the training loss per step.

# %% tags=["hide-input"]
print("command:", training["command"])
plots.training_curve_and_loss(training)

# %% [markdown]
# ## Speed against accuracy
#
# Week 3's inference variants, each timed (median and 90th percentile over repeated runs after a
# warm-up) and evaluated (mask AP) on the same held-out scenes. The Pareto front joins the variants
# that no other variant beats on both axes.

# %% tags=["hide-input"]
print(f"{speed_run['model']} | {speed_run['data']} | {speed_run['device']} | {speed_run['threads']} threads | "
      f"torch {speed_run['torch']} | {speed_run['date']}")
display(plots.speed_and_stages(speed_run))
display(Markdown(results.results_table(speed_run)))
print("Pareto front, fastest first:", results.pareto_front(speed_run))

# %% [markdown]
# ## Tracking overhead
#
# What the tracker adds per frame, on the frame size and device its file names. It is timed apart
# from the detector benchmark above, whose device and image size may differ, so the two are not
# drawn on one axis.

# %% tags=["hide-input"]
plots.tracker_cost(tracker)

# %% [markdown]
# ## ToyCity: how fast the data is made
#
# Every ToyCity chapter draws its scenes on the fly, ground truth included (masks, amodal masks,
# occlusion, track ids), so generation must stay cheap next to the model:

# %% tags=["hide-input"]
height, width = generation["size"]
print("command:", generation["command"])
print(f"{generation['scene_images_per_s']:.0f} scenes per second at {height}x{width} "
      f"({1000 * generation['scene_seconds_each']:.0f} ms each, {1000 * generation['scene_cpu_seconds_each']:.0f} ms of CPU); "
      f"{generation['clip_frames_per_s']:.0f} video frames per second; {generation['cpu_count']} CPUs, "
      f"OMP_NUM_THREADS={generation['omp_num_threads']}, load average {generation['load_average_1min']:.2f}")

# %% [markdown]
# ## Exercises
#
# Each exercise asks for one small function and checks it on generated cases. While the body is
# still `raise NotImplementedError`, the check says "not attempted yet" and the notebook runs on;
# nothing later depends on your answer. A wrong answer stops with the input, the expected and the
# obtained value and a hint; a right one prints a ✓ line. The solution is one click away: the
# dropdown below each exercise on the site, or `exercises.solution("name")` in Jupyter and Colab.

# %% [markdown]
# ```{exercise} A results row from the committed JSON
# :label: exercise-stage_shares
#
# The committed `bench_cpu.json` holds each variant's time per stage (`stages_ms`). Write
# `stage_shares(stages_ms)`: each stage's share of the total, for a row of the write-up's table.
# ```

# %%
from course_lib import exercises


def stage_shares(stages_ms):
    raise NotImplementedError  # your code here


exercises.check("stage_shares", stage_shares)

# %% [markdown]
# ````{solution} exercise-stage_shares
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/realtime.py
# :pyobject: stage_shares
# ```
# ````
