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
# # Where the time goes
#
# Before making a model faster, measure where its time is spent; the answer is rarely what one
# guesses, and it changes with the input size, the number of objects and the hardware. This
# chapter
#
# 1. times Mask R-CNN **correctly** (warm-up, synchronisation, median and 90th percentile);
# 2. splits one forward pass into its **stages**: transform, backbone + FPN, RPN, box head, mask
#    head, paste;
# 3. shows how each stage **scales**: the backbone with the number of pixels, the heads with the
#    number of proposals and detections;
# 4. compares the small ToyCity model with the ResNet-50 FPN one would use on Cityscapes.
#
# The next chapter turns these findings into faster variants and measures what each one costs in
# accuracy.

# %% tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else), and TrackEval and boxmot's trackers
# (with lapx, their assignment solver) without their dependencies: TrackEval's ask for a newer
# numpy than Colab's, boxmot's for its detectors' and re-id models' packages.
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "course_lib[deploy] @ git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "trackeval==1.3.0", "boxmot==25.0.0", "lapx==0.11.1"], check=True)

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from course_lib import environment, zoo
from course_lib.deploy import benchmark, eager
from course_lib.modeling import stage_timing
from course_lib.modeling.maskrcnn import build
from course_lib.report.figures import stage_bars
from course_lib.utils import timing

environment.seed_everything(0)
torch.set_num_threads(environment.pick(1, 2))
REPEATS = environment.pick(5, 30)
MODEL_NAME = "ToyCity model (course_lib.zoo.load('toycity'))"

model = zoo.load("toycity", device="cpu")
val = benchmark.toycity_val(environment.pick(4, 10))
images = [image for image, _ in val]
DATA_NAME = f"ToyCity held-out scenes ({len(images)} images, {images[0].shape[1]}x{images[0].shape[2]})"
print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {timing.device_name(torch.device('cpu'))}")

# %% [markdown]
# ## Timing without fooling yourself
#
# Three rules:
#
# * **Warm up.** The first calls pay one-off costs: memory allocation, lazy initialisation, and on
#   a GPU the selection of convolution algorithms. They say nothing about steady-state speed.
# * **Synchronise.** A CUDA call returns as soon as the work is *queued*; reading the clock right
#   after it measures the queueing. `torch.cuda.synchronize()` waits until the GPU is done
#   (`timing.Stopwatch` does it before and after what it times when the model is on a GPU, and
#   nothing on a CPU).
# * **Report the median and a high percentile**, not the mean of a few runs: an OS hiccup or
#   another process shifts a mean, and the 90th percentile (p90) says how bad a slow frame gets,
#   which matters for video.

# %%
cpu = torch.device("cpu")
with torch.inference_mode():
    with timing.Stopwatch(cpu) as first_call:
        model(images[:1])
    # call i runs image i (cycling): 2 untimed calls, then REPEATS timed ones
    latencies = timing.repeat(lambda i: model([images[i % len(images)]]), cpu, warmup=2, repeats=REPEATS)
latency = timing.summary(latencies)
environment.print_banner(MODEL_NAME, DATA_NAME)
print(f"first call {first_call.seconds * 1e3:.0f} ms | median {latency.median * 1e3:.1f} ms | "
      f"p90 {latency.p90 * 1e3:.1f} ms | mean {latency.mean * 1e3:.1f} ms over {latency.n} calls | "
      f"{1 / latency.median:.1f} images/s")

fig, ax = plt.subplots(figsize=(7, 2.5))
ax.hist(np.array(latencies) * 1e3, bins=15)
ax.axvline(latency.median * 1e3, color="k", label="median")
ax.axvline(latency.p90 * 1e3, color="r", label="p90")
ax.set_xlabel("ms per image")
ax.legend()
plt.show()

# %% [markdown]
# The spread comes from the images (the number of detections varies) and from the machine.
#
# ## The stages of one forward pass
#
# `stage_timing.stage_timer` puts forward hooks on the submodules that `GeneralizedRCNN.forward` calls
# (the same order `course_lib.modeling.internals.trace` replays in Week 1) and adds up their time:
#
# | stage | what runs | scales with |
# |---|---|---|
# | transform | normalise, resize, pad to a multiple of 32 | pixels (cheap) |
# | backbone | ResNet + FPN | pixels |
# | rpn | objectness and deltas on every anchor, decode, top-k, NMS | pixels (anchors), pre-NMS top-k |
# | box_head | RoIAlign 7x7 per proposal, MLP, per-class NMS | proposals |
# | mask_head | RoIAlign 14x14 per detection, a few convolutions and a deconvolution (the ToyCity model's are counted below) | detections |
# | paste | resize 28x28 masks and write them into the full image | detections x image size |

# %%
mask_head_layers = [type(m).__name__ for m in model.roi_heads.mask_head.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
print("the ToyCity model's mask head:", ", ".join(mask_head_layers), "(the last convolution fuses the stride-2 stem)")
stages, memory = stage_timing.measure_stages(model, images, repeats=environment.pick(4, 10))
environment.print_banner(MODEL_NAME, DATA_NAME)
total = sum(stages.values())
for stage, seconds in stages.items():
    print(f"{stage:>10}: {seconds * 1e3:6.1f} ms  {100 * seconds / total:5.1f}%")
print(f"peak memory above the model's weights: {memory:.0f} MB" if memory is not None else "peak memory: not measurable here")
assert set(stages) == set(stage_timing.STAGES) and all(s > 0 for s in stages.values())


def in_ms(stages_s: dict[str, float]) -> dict[str, float]:
    """Seconds per stage (what `measure_stages` returns) in milliseconds (what `stage_bars` draws)."""
    return {stage: 1e3 * seconds for stage, seconds in stages_s.items()}


fig, ax = plt.subplots(figsize=(8, 1.6))
stage_bars(ax, {"ToyCity model": in_ms(stages)})
plt.show()

# %% [markdown]
# ## How the backbone scales with the input size
#
# A convolution's cost is proportional to the number of output positions, so the backbone's time
# should grow linearly with the number of pixels. The `scale` variants of `course_lib.deploy.eager`
# change the transform's `min_size` and `max_size` (and undo it afterwards), so the same images
# can be fed at several sizes:

# %%
scales = environment.pick([0.5, 1.0, 1.5], [0.5, 0.75, 1.0, 1.5, 2.0])
pixels, backbone_ms, by_scale = [], [], {}
for scale in scales:
    with eager.apply(model, eager.Variant(f"x{scale}", scale=scale)):
        stages_at, _ = stage_timing.measure_stages(model, images, repeats=environment.pick(3, 6))
        h, w = benchmark.resized_size(model, images[0])
    pixels.append(h * w / 1e3)
    backbone_ms.append(stages_at["backbone"] * 1e3)
    by_scale[f"{h}x{w}"] = in_ms(stages_at)
slope, intercept = np.polyfit(pixels, backbone_ms, 1)
environment.print_banner(MODEL_NAME, DATA_NAME)
for p, ms in zip(pixels, backbone_ms):
    print(f"{p:7.1f} kpixels: backbone {ms:6.1f} ms (linear fit {slope * p + intercept:6.1f})")

fig, axes = plt.subplots(1, 2, figsize=(13, 3))
axes[0].plot(pixels, backbone_ms, "o-", label="measured")
axes[0].plot(pixels, slope * np.array(pixels) + intercept, "--", label=f"{slope:.2f} ms per kpixel")
axes[0].set_xlabel("input kpixels")
axes[0].set_ylabel("backbone ms")
axes[0].legend()
stage_bars(axes[1], by_scale)
plt.tight_layout()
plt.show()
assert backbone_ms[-1] > backbone_ms[0]  # more pixels, more backbone time

# %% [markdown]
# ## How the heads scale with detections
#
# The mask head and the paste run once per *detection*. The ToyCity model keeps up to 50 per image
# with a score of at least 0.05 (the COCO convention: low-score detections still add a little
# recall, and AP rewards recall). Most of them are background clutter that no one will look at.
# Raising the score threshold shows what they cost:

# %%
thresholds = [0.05, 0.3, 0.5, 0.7]
head_ms, counts = [], []
for threshold in thresholds:
    with eager.apply(model, eager.Variant(f"score {threshold}", score_thresh=threshold)):
        stages_at, _ = stage_timing.measure_stages(model, images, repeats=environment.pick(3, 6))
        with torch.inference_mode():
            counts.append(np.mean([len(o["scores"]) for o in model(images)]))
    head_ms.append((stages_at["mask_head"] + stages_at["paste"]) * 1e3)
environment.print_banner(MODEL_NAME, DATA_NAME)
for threshold, n, ms in zip(thresholds, counts, head_ms):
    print(f"score >= {threshold:4.2f}: {n:5.1f} detections per image, mask head + paste {ms:5.1f} ms")

# %% [markdown]
# ## A ResNet-50 FPN for comparison
#
# The ToyCity model is deliberately small (a ResNet-18 trunk cut after `layer3`, a 128-channel
# FPN, 128x256 inputs). The model one fine-tunes on Cityscapes is torchvision's ResNet-50 FPN at
# 1024x2048 or so. Its weights do not matter for timing, so we build it untrained. An untrained
# model always fills its detection cap, which would inflate the head stages; we cap it at 20
# detections, a typical count for a street scene, and say so.

# %%
r50 = build("maskrcnn_resnet50_fpn", min_size=environment.pick(256, 512), max_size=environment.pick(512, 1024),
            box_detections_per_img=20).eval()
street = torch.nn.functional.interpolate(images[0][None], scale_factor=environment.pick(2, 4), mode="bilinear")[0]
r50_stages, _ = stage_timing.measure_stages(r50, [street], repeats=environment.pick(2, 4))
environment.print_banner("untrained Mask R-CNN R50-FPN (timing only), 20 detections", f"one ToyCity image upscaled to {street.shape[1]}x{street.shape[2]}")
r50_total = sum(r50_stages.values())
for stage, seconds in r50_stages.items():
    print(f"{stage:>10}: {seconds * 1e3:7.1f} ms  {100 * seconds / r50_total:5.1f}%")
toy_share, r50_share = (timed["backbone"] / sum(timed.values()) for timed in (stages, r50_stages))
print(f"backbone share: ToyCity model {toy_share:.0%}, R50-FPN {r50_share:.0%}")
assert r50_share > toy_share, "the backbone weighs more in the R50-FPN than in the ToyCity model"
fig, ax = plt.subplots(figsize=(8, 1.8))
stage_bars(ax, {"R50-FPN": in_ms(r50_stages), "ToyCity": in_ms(stages)})
ax.set_xscale("log")
plt.show()

# %% [markdown]
# ## What to take away
#
# * Time only after a warm-up, synchronise on a GPU, and report median and p90.
# * The **backbone** cost follows the pixel count: the input size is its strongest lever. Storing
#   activations as `channels_last` and computing in bfloat16 speed it up too, less, at the same
#   input size (the next chapter's committed benchmark; the cell below reads it).
# * The **heads** cost follows the number of proposals (box head) and detections (mask head and
#   paste). When scenes hold a dozen objects rather than hundreds, fewer proposals and a sensible
#   score threshold cost little accuracy (the next chapter measures how little).
# * The balance depends on the model: the backbone's share of the time is larger in the big R50-FPN
#   than in the small ToyCity model, where the heads take a large share, so the levers that pay off differ.

# %%
from course_lib.results import load_results

bench = {row["name"]: row["stages_ms"]["backbone"] for row in load_results("bench_cpu.json")["variants"]}
backbone_change = {name: bench[name] / bench["baseline"] - 1 for name in ("scale_0.5", "scale_0.75", "channels_last", "bf16")}
print("[bench_cpu.json] backbone time against the baseline:", ", ".join(f"{n} {c:+.0%}" for n, c in backbone_change.items()))
assert min(backbone_change, key=backbone_change.get) == "scale_0.5", "the input size is the strongest lever on the backbone"
assert backbone_change["channels_last"] < 0 and backbone_change["bf16"] < 0, "and not the only one"

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
# **To explore** (no check): time the stages with `torch.set_num_threads(1)` and with all your
# cores. Which stages gain from more threads, and why do the ones that run per detection gain least?

# %% [markdown]
# ```{exercise} Median and p90 latency
# :label: exercise-latency_summary
#
# Write `latency_summary(times_ms, warmup)` returning `(median, p90)` of a list of per-run
# latencies after dropping the first `warmup` runs (at least one run is left): the median as
# `np.median`, p90 as numpy's default percentile, which interpolates linearly between the two
# nearest ranks. Checked against `statistics.median` and `np.percentile(..., method="linear")`.
# ```

# %%
import numpy as np

from course_lib import exercises


def latency_summary(times_ms, warmup):
    raise NotImplementedError  # your code here


exercises.check("latency_summary", latency_summary)

# %% [markdown]
# ````{solution} exercise-latency_summary
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/speed.py
# :pyobject: latency_summary
# ```
# ````

# %% [markdown]
# ```{exercise} Backbone time at another input size
# :label: exercise-scaled_ms
#
# Write `scaled_ms(ms, size_from, size_to)`: the backbone time at input size `size_to = (H, W)`
# predicted from `ms` measured at `size_from`, assuming its work is proportional to the pixel
# count.
# ```

# %%
def scaled_ms(ms, size_from, size_to):
    raise NotImplementedError  # your code here


exercises.check("scaled_ms", scaled_ms)

# %% [markdown]
# ````{solution} exercise-scaled_ms
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/speed.py
# :pyobject: scaled_ms
# ```
# ````
