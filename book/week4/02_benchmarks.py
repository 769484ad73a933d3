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
from course_lib.report import figures

training = results.load_results("toycity_training.json")
speed_run = results.load_results("bench_cpu.json")
tracker = results.load_results("tracker_cpu.json")
generation = results.load_results("toycity_speed.json")

for name, labels in (("toycity_training.json", f"{training['training']['val_scenes']}, CPU with {training['training']['threads']} threads"),
                     ("bench_cpu.json", f"{speed_run['model']} | {speed_run['data']} | {speed_run['device']}"),
                     ("tracker_cpu.json", f"ToyCity frames {tracker['frame_size']} | {tracker['device']}"),
                     ("toycity_speed.json", f"ToyCity scenes {generation['size']} | {generation['device']}, "
                                            f"OMP_NUM_THREADS={generation['omp_num_threads']}")):
    print(f"{name:<22} {labels}")

# %% [markdown]
# ## Training: accuracy against time
#
# Held-out mask and box AP (pycocotools) at each evaluation of the training run, against the time
# spent in optimiser steps (evaluation excluded), and the training loss per step.

# %% tags=["hide-input"]
print("command:", training["command"])
figures.training_curve_and_loss(training)

# %% [markdown]
# ## Speed against accuracy
#
# Week 3's inference variants, each timed (median and 90th percentile over repeated runs after a
# warm-up) and evaluated (mask AP) on the same held-out scenes. The Pareto front joins the variants
# that no other variant beats on both axes.

# %% tags=["hide-input"]
print(f"{speed_run['model']} | {speed_run['data']} | {speed_run['device']} | {speed_run['threads']} threads | "
      f"torch {speed_run['torch']} | {speed_run['date']}")
display(figures.speed_and_stages(speed_run))
display(Markdown(results.results_table(speed_run)))
print("Pareto front, fastest first:", results.pareto_front(speed_run))

# %% [markdown]
# ## Tracking overhead
#
# What the tracker adds per frame, on the frame size and device its file names. It is timed apart
# from the detector benchmark above, whose device and image size may differ, so the two are not
# drawn on one axis.

# %% tags=["hide-input"]
figures.tracker_cost(tracker)

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
      f"{generation['clip_frames_per_s']:.0f} video frames per second; {generation['device']}, "
      f"OMP_NUM_THREADS={generation['omp_num_threads']}, {results.load_text(generation)}")

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
# ```{exercise} What one faster stage buys (Amdahl's law)
# :label: exercise-overall_speedup
#
# The committed `bench_cpu.json` holds each variant's time per stage (`stages_ms`). Before
# optimising a stage, ask what it can buy. Write `overall_speedup(stages_ms, stage, factor)`: the
# speed-up of the whole image (old total time / new total time) when only `stage` runs `factor`
# times faster and the others keep their time: Amdahl's law. A stage that takes a small share
# caps the gain however fast it becomes.
# ```

# %%
from course_lib import exercises


def overall_speedup(stages_ms, stage, factor):
    raise NotImplementedError  # your code here


exercises.check("overall_speedup", overall_speedup)

# %% [markdown]
# ````{solution} exercise-overall_speedup
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/realtime.py
# :pyobject: overall_speedup
# ```
# ````
