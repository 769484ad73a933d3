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
# files. Each file states its model, its data and its device; the first cell checks that they do.
# To measure on your own machine, rerun the command each section prints and point the chapter at
# your file.

# %%
# Colab: install the course library (a no-op everywhere else).
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from course_lib import bench

training = bench.load_results("toycity_training.json")
speed_run = bench.load_results("bench_cpu.json")
tracker = bench.load_results("tracker_cpu.json")
generation = bench.load_results("toycity_speed.json")

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

# %%
curve, losses = training["curve"], training["loss"]
print("command:", training["command"])
minutes = [r["train_wall_s"] / 60 for r in curve]
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
for key, name in (("segm_AP", "mask AP"), ("segm_AP50", "mask AP50"), ("bbox_AP", "box AP")):
    left.plot(minutes, [100 * r[key] for r in curve], "o-", label=name)
left.set_xlabel("training time (minutes of optimiser steps, CPU)")
left.set_ylabel("held-out ToyCity AP (%)")
left.legend()
right.plot([r["step"] for r in losses], [r["loss"] for r in losses], lw=0.6, alpha=0.5, label="per step")
window = 20
smooth = [sum(r["loss"] for r in losses[max(0, i - window + 1): i + 1]) / min(i + 1, window) for i in range(len(losses))]
right.plot([r["step"] for r in losses], smooth, label=f"mean of the last {window}")
right.set_xlabel("step")
right.set_ylabel("total training loss")
right.legend()
plt.show()

# %% [markdown]
# ## Speed against accuracy
#
# Week 3's inference variants, each timed (median and 90th percentile over repeated runs after a
# warm-up) and evaluated (mask AP) on the same held-out scenes. The Pareto front joins the variants
# that no other variant beats on both axes.

# %%
print(f"{speed_run['model']} | {speed_run['data']} | {speed_run['device']} | {speed_run['threads']} threads | "
      f"torch {speed_run['torch']} | {speed_run['date']}")
display(Markdown(bench.results_table(speed_run)))
fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2), layout="constrained", width_ratios=(1.2, 1))
bench.pareto_plot(speed_run, ax=left)
names = [row["name"] for row in speed_run["variants"]]
bottom = [0.0] * len(names)
for stage in bench.STAGES:
    values = [row["stages_ms"].get(stage, 0.0) for row in speed_run["variants"]]
    right.barh(names, values, left=bottom, label=stage)
    bottom = [b + v for b, v in zip(bottom, values)]
right.invert_yaxis()
right.set_xlabel("time per image by stage (ms)")
right.legend(fontsize=8)
plt.show()
front = bench.pareto_front(speed_run)
print("Pareto front, fastest first:", front)

# %% [markdown]
# ## Tracking overhead
#
# What the tracker adds per frame, next to what detection costs per image (the benchmark's
# baseline; the two files were measured separately, on the devices they name).

# %%
baseline = speed_run["variants"][0]
detection = f"detection, {speed_run['input_size'][0]}x{speed_run['input_size'][1]}"
frame = f"{tracker['frame_size'][0]}x{tracker['frame_size'][1]}"
parts = {detection: baseline["median_ms"], f"tracker update, {frame}": tracker["update_ms"], f"mask pasting, {frame}": tracker["paste_ms"]}
fig, ax = plt.subplots(figsize=(7, 2.4), layout="constrained")
ax.barh(list(parts), list(parts.values()), color=["tab:blue", "tab:orange", "tab:green"])
ax.invert_yaxis()
ax.set_xlabel("ms per frame")
ax.set_title(f"detection: {speed_run['device']}; tracker: {tracker['instances_per_frame']:.0f} instances per frame, {tracker['device']}",
             fontsize=9)
plt.show()

# %% [markdown]
# ## ToyCity: how fast the data is made
#
# Every ToyCity chapter draws its scenes on the fly, ground truth included (masks, amodal masks,
# occlusion, track ids), so generation must stay cheap next to the model:

# %%
height, width = generation["size"]
print("command:", generation["command"])
print(f"{generation['scene_images_per_s']:.0f} scenes per second at {height}x{width} "
      f"({1000 * generation['scene_seconds_each']:.0f} ms each, {1000 * generation['scene_cpu_seconds_each']:.0f} ms of CPU); "
      f"{generation['clip_frames_per_s']:.0f} video frames per second; {generation['cpu_count']} CPUs, "
      f"OMP_NUM_THREADS={generation['omp_num_threads']}, load average {generation['load_average_1min']:.2f}")
