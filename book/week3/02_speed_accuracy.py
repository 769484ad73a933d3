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
# # Speed against accuracy
#
# The previous chapter showed where the time goes. This one changes the model's test-time
# settings one at a time, measures **latency and mask AP side by side**, and looks for the
# variants that are worth it: the ones no other variant beats on both counts (the **Pareto
# front**). We also look at what **quantization** does and why it helps so little here, and then
# at **deployment**: the model exported to ONNX and OpenVINO, in FP32, bfloat16 and INT8 with
# calibration. The chapter ends with which variant to pick, and how to check that pick on your device.
#
# The table and plot below are read from a committed file, `course_lib/assets/results/bench_cpu.json`,
# written by one run of
#
# ```
# python -m course_lib bench --model toycity --val 100 --repeats 30 --threads 1 \
#     --variants baseline,rpn_300,rpn_100,det_20,channels_last,int8,bf16,compile,scale_0.75,scale_0.5,batch_4,fast,fast_small,fast_bf16 \
#     --out course_lib/assets/results/bench_cpu.json
# ```
#
# so the text and the numbers come from the same measurement. The side experiments (what INT8 does
# to the box head, a large model, a GPU, a live run on your machine) are in the
# [speed experiments appendix](../appendix_speed.ipynb).

# %% tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else), and TrackEval and boxmot's trackers
# (with lapx, their assignment solver) without their dependencies: TrackEval's ask for a newer
# numpy than Colab's, boxmot's for its detectors' and re-id models' packages.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "course_lib[deploy] @ git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "trackeval==1.3.0", "boxmot==25.0.0", "lapx==0.11.1"], check=True)

# %%
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from course_lib import environment, zoo
from course_lib.deploy import benchmark, eager
from course_lib.results import load_results, pareto_front, results_table
from course_lib.report import figures

environment.seed_everything(0)
torch.set_num_threads(environment.pick(1, 2))

# %% [markdown]
# ## The variants
#
# Each variant of `course_lib.deploy.eager` is a named, reversible change of a built model
# (`with eager.apply(model, "rpn_100"): ...` restores every setting on exit):

# %%
for variant in eager.VARIANTS.values():
    print(f"{variant.name:>14}: {variant.describe()}")
print("\nnot on a CPU:", eager.get("fp16").name, "-", eager.get("fp16").supported(torch.device("cpu")))

# %% [markdown]
# ## The committed measurement
#
# Each variant's **speed-up** compares its latency with the unmodified model's, timed beside it in
# the same run (`paired_baseline_ms`): the machine that ran this is shared, and its load drifts over
# the minutes a full run takes. The baseline row's own "speed-up" (the model against itself)
# shows how large that noise is. The **mask AP** is computed on all 100 held-out scenes.

# %%
results = load_results("bench_cpu.json")
print(f"[results from] model: {results['model']} | data: {results['data']} | device: {results['device']}, "
      f"{results['threads']} threads | torch {results['torch']}, torchvision {results['torchvision']} | {results['date']}")
display(Markdown(results_table(results)))
for name, reason in results["skipped"].items():
    print(f"not measured: {name}: {reason}")
print(f"bfloat16 units on the benchmark's CPU: {results.get('cpu_bf16_units')}; on this machine: {environment.cpu_has_bf16_units()}")
rows = {row["name"]: row for row in results["variants"]}
assert results["variants"][0]["name"] == "baseline"
print(f"noise check: the baseline against itself, timed twice in a row: {rows['baseline']['speedup']:.2f}x")

# %%
fig, ax = plt.subplots(figsize=(8, 5))
figures.pareto_plot(results, ax)
plt.show()
front = pareto_front(results)
print("Pareto front, fastest first:", " -> ".join(front))

# %% [markdown]
# ## Reading the table
#
# The goal set for this week was a variant with **at least 3x the baseline's throughput for at
# most 1.0 point of mask AP lost**, on the CPU. The check below reads it off the table:

# %%
meets = [r for r in results["variants"] if r["speedup"] >= 3.0 and r["mask_AP_drop"] <= 1.0]
best = max((r for r in results["variants"] if r["mask_AP_drop"] <= 1.0), key=lambda r: r["speedup"])
print(f"fastest variant within 1.0 AP point of the baseline: {best['name']} ({best['description']}): "
      f"{best['speedup']:.2f}x, mask AP {100 * best['mask_AP']:.1f} ({best['mask_AP_drop']:+.1f} points)")
print("goal (>= 3x at <= 1.0 point) met by:", ", ".join(r["name"] for r in meets) or "no variant")
for name in ("baseline", best["name"]):
    stages = rows[name]["stages_ms"]
    print(f"{name:>10}: " + ", ".join(f"{s} {ms:.1f}" for s, ms in stages.items()) + " (ms)")

# %% [markdown]
# What each lever does, and what decides whether it pays:
#
# * **Detections per image and score threshold** (`det_20`). The ToyCity model keeps up to 50
#   detections with a score of at least 0.05 (the COCO convention), and the mask head and the paste
#   run on every one of them. ToyCity scenes place 5 to 14 objects, so most of those detections are
#   low-score clutter. Dropping them removes less than half of the mask head's work (not every image
#   reaches the cap), and costs a little AP: AP also credits true objects found at a low score.
# * **RPN proposals** (`rpn_300`, `rpn_100`). Every proposal goes through RoIAlign and the box head's
#   MLP. The ToyCity model already keeps only 300 (torchvision's R50 keeps 1000 at test time), and
#   a street with a dozen objects needs far fewer than that.
# * **Input size** (`scale_0.75`, `scale_0.5`). The backbone's time falls with the pixel count, but
#   ToyCity objects are small (8 to 100 pixels at 128x256), and shrinking the image loses the
#   smallest ones first.
# * **channels_last** stores activations as NHWC, which some convolution kernels prefer (GPUs with
#   tensor cores in particular); on a CPU it depends on the kernels.
# * **bfloat16 autocast** runs matrix products and convolutions in 16-bit "brain floating point"
#   (8 exponent bits like float32, 7 stored mantissa bits). It pays only on CPUs with bf16 units (Intel
#   AMX or AVX512-BF16, recent ARM cores); elsewhere it adds conversions and is slower. It also
#   moves boxes by a few pixels. `fast_bf16` combines it with channels_last and the head levers.
# * **Batching** (`batch_4`) amortises Python overhead and fills wide hardware: little to gain on
#   two cores with tiny images, the first thing to do on a GPU.
# * **`torch.compile`** fuses the backbone's operators. Its first call compiles (it needs a C++
#   compiler); `warmup_s` in the JSON records how long.
#
# The measured effect of each, relative to the baseline, with the stage that moved most:

# %%
base_stages = rows["baseline"]["stages_ms"]
for row in results["variants"][1:]:
    change = {s: row["stages_ms"][s] - base_stages[s] for s in base_stages}
    stage = min(change, key=change.get) if min(change.values()) < 0 else max(change, key=change.get)
    print(f"{row['name']:>13}: {row['speedup']:.2f}x, mask AP change {-row['mask_AP_drop']:+.1f} points; "
          f"largest stage change: {stage} {change[stage]:+.1f} ms")
mask_cut = 1 - rows["det_20"]["stages_ms"]["mask_head"] / base_stages["mask_head"]
print(f"det_20 cuts the mask head's time by {mask_cut:.0%}")
assert 0 < mask_cut < 0.5, "det_20 removes part of the mask head's work, less than half"
assert rows["det_20"]["mask_AP_drop"] > 0 and rows["rpn_100"]["speedup"] > 1.2 > 1.0 > rows["rpn_100"]["mask_AP_drop"]
assert rows["scale_0.5"]["mask_AP_drop"] > rows["scale_0.75"]["mask_AP_drop"] > 1.0, "shrinking the image costs AP"
assert results["cpu_bf16_units"] and rows["bf16"]["speedup"] > 1, "bf16 pays on a CPU with bf16 units"
assert abs(rows["batch_4"]["speedup"] - 1) < 0.1, "batching: little to gain on two cores with tiny images"
assert rows["compile"]["warmup_s"] > 10 * rows["baseline"]["warmup_s"], "torch.compile's first call compiles"

# %% [markdown]
# ## Quantization
#
# Quantization stores numbers with fewer bits. **INT8 dynamic quantization** (the `int8` variant)
# converts the weights of the `nn.Linear` layers to 8-bit integers once, and at run time
# quantizes each layer's input with a scale computed on the fly:
#
# $$ \begin{aligned}
#    x_q &= \operatorname{round}(x / s) + z, \\
#    s &= \frac{\max(\max x, 0) - \min(\min x, 0)}{q_\max}, \\
#    z &= \operatorname{round}\Big(\frac{-\min(\min x, 0)}{s}\Big),
#    \end{aligned} $$
#
# then multiplies integers and converts back. The range always includes zero, so that zero (padding,
# ReLU's output) is represented exactly by the integer $z$. And $q_\max$ is not $2^8 - 1$ here:
# PyTorch's x86 backend (fbgemm) quantizes dynamic activations with `reduce_range`, to seven bits
# ($q_\max = 2^7 - 1$), which leaves headroom in its 16-bit intermediate sums of products. It needs no calibration data, which is why it is the
# usual first try. But in Mask R-CNN the Linear layers are only the box head's MLP and predictor;
# the convolutions (backbone, FPN, RPN head, mask head) are untouched, and they hold most of the
# time. Quantizing convolutions needs **static** quantization with calibration images (below, in
# a runtime); on a GPU the usual choice is simply **float16** with tensor cores.
#
# What it does to latency is in the `int8` row of the table (what it does to the box head's size
# and outputs is in the appendix). The box head stage (RoI Align, the MLP, the predictor and the
# per-class NMS) is a minority of the time, so even a box head that cost nothing could not speed up
# the whole model beyond $1 / (1 - \text{share})$ (Amdahl's law), and quantizing its MLP gets less
# than that:

# %%
box_share = base_stages["box_head"] / sum(base_stages.values())
print(f"box head stage: {box_share:.0%} of the baseline's time -> at most {1 / (1 - box_share):.2f}x from it; "
      f"int8 measured {rows['int8']['speedup']:.2f}x")
assert box_share < 0.5 and rows["int8"]["speedup"] < 1 / (1 - box_share)

# %% [markdown]
# ## Deploying: export, runtimes and INT8
#
# Every lever so far is a setting of the PyTorch model, run by PyTorch's eager interpreter: one
# operator at a time, each one a separate call into a kernel library. Deployment usually goes one
# step further: the model is **exported** as a graph and handed to an **inference runtime**, which
# sees the whole computation at once. It can fuse a convolution with the normalisation and
# activation after it, choose memory layouts and kernels for this very CPU, plan its buffers ahead,
# and run in lower precision. The course uses the two CPU runtimes most deployments meet:
# [ONNX Runtime](https://onnxruntime.ai) (reads the ONNX format, runs on almost anything) and
# [OpenVINO](https://docs.openvino.ai) (Intel's runtime, fast on x86 CPUs), with
# [NNCF](https://github.com/openvinotoolkit/nncf) for INT8 quantization.
#
# **What gets exported.** `course_lib.deploy.export` traces the model from the image to the small
# per-box mask maps: the transform's normalisation and resize, backbone, FPN, RPN with its NMS, RoI
# Align, both heads, the per-class NMS and the rescaling of the boxes are all in the graph, so one
# session turns an image into boxes, labels, scores and mask maps. Two things needed care:
#
# * A trace records the operations that ran on the example input. The course's
#   `SeparableMultiScaleRoIAlign` (RoI Align as matrix products, built for fast training) builds its
#   matrices box by box in Python, so the trace would remember *how many* boxes the example had and
#   fail on the next image. The export swaps in its parent, torchvision's `MultiScaleRoIAlign`,
#   which calls the RoI Align kernel: the same numbers, and an operator (`RoiAlign`) that ONNX has.
# * The final paste of each mask map into the full image computes only the pixels of each box: a
#   loop whose length and slice sizes depend on the detections. Traced, it would freeze them. So the
#   paste stays outside the graph and runs in torch with the course's exact paste
#   (`course_lib.modeling.paste.paste_masks`), the same code the eager model uses.
#
# The settings of the variants above (proposals, detections, score threshold, input scale) become
# constants of the graph: a runtime variant is written `RUNTIME@SETTINGS`, e.g. `ov_int8@fast`. The
# image size is fixed at export time too. The exported model must agree with the PyTorch one before
# it is trusted; here on two held-out scenes, in both runtimes:

# %%
import tempfile

from course_lib import deploy

assert deploy.available(), "pip install 'course_lib[deploy]' for ONNX Runtime, OpenVINO and NNCF"
from course_lib.deploy import variants

model = zoo.load("toycity", device="cpu")
check_images = [image for image, _ in benchmark.toycity_val(2)]
with tempfile.TemporaryDirectory() as folder:
    for name in ("ort", "ov_fp32@fast"):
        predictor, path = variants.build(model, name, 128, 256, [], folder)
        agreement = variants.agreement_with_eager(model, predictor, variants.parse(name).settings, check_images)
        print(f"{name:>13} ({predictor.description}): {path.name}, {path.stat().st_size / 1e6:.1f} MB; "
              f"confident detections reproduced {agreement['detections']:.0%}, mask IoU {agreement['mask_iou']:.3f}")
        assert agreement["detections"] >= 0.95 and agreement["mask_iou"] >= 0.95

# %% [markdown]
# From the shell, `python -m course_lib export --runtime ov_int8@fast --out toycity.xml` writes an
# OpenVINO model after the same check (and writes nothing if the check fails), and
# `python -m course_lib video IN OUT --runtime toycity.xml` runs the video demo on it.
#
# **INT8 with calibration.** Dynamic quantization (above) left the convolutions alone. A runtime
# can quantize them *statically*: NNCF runs the exported model on a set of **calibration** images,
# records the range of every activation that enters a convolution or matrix product, and inserts
# quantize/dequantize pairs with those ranges; OpenVINO then executes those layers with 8-bit
# integer kernels, which pay off on CPUs with dot-product units (VNNI, AMX). The calibration images
# must look like the data the model will see, and must not be the images it is measured on: they
# are ToyCity *training* scenes.
#
# Not every layer tolerates rounding equally. Inside the backbone an error is averaged by the layers
# after it; in the last layer of a head it lands directly in the output: a box regressor off by a
# pixel costs IoU on a small object, and the mask logits are thresholded at one half. NNCF's
# **ignored scope** keeps chosen layers in floating point. The course names three choices
# (`course_lib.deploy.quantize.IGNORED_SCOPES`):

# %%
from course_lib.deploy.quantize import DEFAULT_SCOPE, IGNORED_SCOPES

for scope, spec in IGNORED_SCOPES.items():
    kept = ", ".join(spec.get("patterns", []) + spec.get("types", [])) or "nothing: every convolution and matrix product in INT8"
    print(f"{scope:>21}{' (default)' if scope == DEFAULT_SCOPE else ''}: {kept}")

# %% [markdown]
# A runtime can also run its floating-point layers in **bfloat16** where the CPU has bfloat16
# units (`ov_bf16`, and `ov_int8_bf16` for the layers INT8 leaves out); elsewhere OpenVINO falls
# back to FP32.
#
# ## The runtimes measured
#
# The committed file `course_lib/assets/results/deploy_cpu.json` holds one run of the eager model
# and the runtimes on the same held-out scenes, **timed interleaved**: each round takes the next
# scene and runs every variant on it, in an order that rotates, so background load hits all of them
# alike. A variant's speed-up is the median over rounds of the eager baseline's time divided by its
# own, on the same image in the same round. Its command, versions, CPU features and load are in the
# file; the table reads it. It was timed on a quiet machine: the one-minute load average stayed at or
# under the core count (the benchmark refuses to write a file otherwise). Its eager baseline's median
# still differs from `bench_cpu.json`'s, another run: compare speed-ups within one file, never
# latencies across files.

# %%
deployed = load_results("deploy_cpu.json")
print(f"[results from] model: {deployed['model']} | data: {deployed['data']} | device: {deployed['device']}, "
      f"{deployed['threads']} thread(s) | {', '.join(f'{k} {v}' for k, v in deployed['versions'].items())} | {deployed['date']}")
print("command:", deployed["command"])
busy = max(deployed["load_average_1min"].values())
print("CPU features:", ", ".join(deployed["cpu_features"]), f"| load average (1 min) at most {busy:.1f} on {deployed['cores']} cores")
assert busy <= deployed["cores"], "the prose above describes a file timed on a quiet machine"
by_name = {r["name"]: r for r in deployed["variants"]}
ratio = by_name["baseline"]["median_ms"] / rows["baseline"]["median_ms"]
print(f"its eager baseline's median is {ratio:.2f}x bench_cpu.json's")
assert abs(ratio - 1) > 0.1, "the two files' baselines differ: compare speed-ups, not latencies"
display(Markdown(results_table(deployed)))
within = [r for r in deployed["variants"] if r["mask_AP_drop"] <= 1.0]
best_deployed = max(within, key=lambda r: r["speedup"])
print(f"fastest within 1.0 AP point of the eager baseline: {best_deployed['name']} ({best_deployed['description']}): "
      f"{best_deployed['speedup']:.2f}x, mask AP {100 * best_deployed['mask_AP']:.1f} ({best_deployed['mask_AP_drop']:+.1f} points)")
print("goal (>= 3x at <= 1.0 point) met by:",
      ", ".join(r["name"] for r in deployed["variants"] if r["speedup"] >= 3.0 and r["mask_AP_drop"] <= 1.0) or "no variant")

# %% [markdown]
# The plot below puts the runtimes on the Pareto plot of the eager variants at the latency their
# speed-up implies for the eager run's baseline:

# %%
fig, ax = plt.subplots(figsize=(8, 5))
figures.pareto_plot(results, ax)
eager_baseline_ms = rows["baseline"]["median_ms"]
for row in deployed["variants"]:
    if row["name"] in rows:
        continue  # an eager variant: already on the plot
    x = eager_baseline_ms / row["speedup"]
    ax.scatter(x, 100 * row["mask_AP"], color="tab:red", marker="s")
    ax.annotate(row["name"], (x, 100 * row["mask_AP"]), textcoords="offset points", xytext=(4, -10), fontsize=8, color="tab:red")
ax.scatter([], [], color="tab:red", marker="s", label="runtimes (deploy_cpu.json, at the eager baseline / speed-up)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# What the table teaches:
#
# * A runtime alone, in FP32, changes little on this model: the same arithmetic, scheduled a
#   little differently. The mask AP does not move, which is the check that the export is faithful.
# * Lower precision is where the speed is, on a CPU with the units for it: bfloat16 where the CPU
#   has bfloat16 units, INT8 where it has integer dot-product units (VNNI, AMX).
# * What is quantized decides what INT8 costs. NNCF's defaults also quantize the box arithmetic
#   (`course_lib.deploy.quantize` explains how) and lose AP; quantizing only the layers keeps it
#   within the budget.

# %%
for name in ("ort", "ov_fp32", "ov_bf16", "ov_int8#nncf_defaults", "ov_int8"):
    row = by_name[name]
    print(f"{name:>22}: {row['speedup']:.2f}x, mask AP {100 * row['mask_AP']:.1f} ({row['mask_AP_drop']:+.1f} points), "
          f"box AP {100 * row['box_AP']:.1f}; built (exported, quantized) in {row['build_s']:.0f} s")
print(f"INT8 calibrated on {deployed['calibration_images']} ToyCity training scenes")
fp32_runtimes = [by_name["ort"], by_name["ov_fp32"]]
assert all(r["mask_AP_drop"] == 0 and r["speedup"] < 1.5 for r in fp32_runtimes), "FP32 runtimes: same AP, little speed"
assert {"avx512_bf16", "avx512_vnni"} <= set(deployed["cpu_features"]), "the units lower precision needs"
assert min(by_name["ov_bf16"]["speedup"], by_name["ov_int8"]["speedup"]) > max(r["speedup"] for r in fp32_runtimes)
assert by_name["ov_int8#nncf_defaults"]["mask_AP_drop"] > 1.0 >= by_name["ov_int8"]["mask_AP_drop"]

# %% [markdown]
# ## What to pick
#
# Runtime speed-ups and test-time settings multiply: the `RUNTIME@fast` rows combine a lower
# precision with the head levers. On this CPU the choice is read off the front of the runtime run:
# the fastest variant there within the AP budget. Without a runtime, the eager variant read off the
# first table is the pick. Both rest on CPU units (bfloat16, VNNI) that another machine may lack, so
# before choosing for a device, rerun `python -m course_lib bench` on it: the ranking can change.

# %%
deploy_front = pareto_front(deployed)
print("Pareto front of deploy_cpu.json, fastest first:", " -> ".join(deploy_front))
print(f"pick with a runtime: {best_deployed['name']}, {best_deployed['speedup']:.2f}x at {best_deployed['mask_AP_drop']:+.1f} points; "
      f"eager only: {best['name']}, {best['speedup']:.2f}x at {best['mask_AP_drop']:+.1f} points (bench_cpu.json)")
product = by_name["ov_int8"]["speedup"] * by_name["fast"]["speedup"]
print(f"ov_int8 {by_name['ov_int8']['speedup']:.2f}x times fast {by_name['fast']['speedup']:.2f}x = {product:.2f}x; "
      f"ov_int8@fast measured {by_name['ov_int8@fast']['speedup']:.2f}x")
assert 0.85 < by_name["ov_int8@fast"]["speedup"] / product < 1.15, "runtime and settings speed-ups multiply"
assert best_deployed["name"] in deploy_front and "@fast" in best_deployed["name"]
assert best["name"] in front and best_deployed["speedup"] > best["speedup"]

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
# ```{exercise} The Pareto front
# :label: exercise-pareto
#
# Write `pareto(variants)` for a list of `(name, median_ms, mask_ap)`: the names of the variants
# that no other variant beats, fastest first. A variant is beaten by one at least as fast and at
# least as accurate and better in one of the two: at equal latency the less accurate one is
# beaten, at equal AP the slower one (no two variants tie on both). One case is the committed
# benchmark. Checked against that definition, pair by pair.
# ```

# %%
from course_lib import exercises


def pareto(variants):
    raise NotImplementedError  # your code here


exercises.check("pareto", pareto)

# %% [markdown]
# ````{solution} exercise-pareto
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/speed.py
# :pyobject: pareto
# ```
# ````

# %% [markdown]
# ```{exercise} The size the model really sees
# :label: exercise-resized_size
#
# Write `resized_size(height, width, min_size, max_size)`: the `(H, W)` of an image after the
# resize inside torchvision's Mask R-CNN: one scale for both sides, the largest that keeps the
# short side at most `min_size` and the long side at most `max_size`, each side rounded down.
# Checked against `GeneralizedRCNNTransform.resize`.
# ```

# %%
import math


def resized_size(height, width, min_size, max_size):
    raise NotImplementedError  # your code here


exercises.check("resized_size", resized_size)

# %% [markdown]
# ````{solution} exercise-resized_size
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/speed.py
# :pyobject: resized_size
# ```
# ````
