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
# # Speed experiments
#
# The side experiments behind the [speed against accuracy](week3/02_speed_accuracy.ipynb) chapter:
# what dynamic INT8 does to the box head, a large model on the CPU runtimes, whether AP costs add
# up, the same models on a GPU, and a live run on your machine. Every number is computed on the
# page or read from a committed results file that names its command, model and device.

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
import torch
from IPython.display import Markdown, display

from course_lib import environment, zoo
from course_lib.deploy import benchmark, eager
from course_lib.results import load_results, results_table

environment.seed_everything(0)
torch.set_num_threads(environment.pick(1, 2))
MODEL_NAME = "ToyCity model (course_lib.zoo.load('toycity'))"
model = zoo.load("toycity", device="cpu")
results = load_results("bench_cpu.json")  # the chapter's eager variants
rows = {row["name"]: row for row in results["variants"]}
print(f"[results from bench_cpu.json] model: {results['model']} | data: {results['data']} | device: {results['device']}, "
      f"{results['threads']} threads | {results['date']}")

# %% [markdown]
# ## Dynamic INT8 on the box head
#
# The chapter's `int8` variant quantizes the weights of the box head's `nn.Linear` layers to 8-bit
# integers. On this model, what that does to their size and to the outputs:

# %%
images = [image for image, _ in benchmark.toycity_val(environment.pick(2, 8))]
int8_heads = eager.quantize_linear_int8(model.roi_heads)
size_fp32 = sum(p.numel() * 4 for m in model.roi_heads.box_head.modules() if isinstance(m, torch.nn.Linear) for p in m.parameters())
int8_linears = [m for m in int8_heads.box_head.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
size_int8 = sum(m.weight().numel() + 4 * m.bias().numel() for m in int8_linears)  # 1 byte per weight, float32 bias
with torch.inference_mode():
    reference = model(images)
    with eager.apply(model, "int8"):
        quantized = model(images)
environment.print_banner(MODEL_NAME, f"{len(images)} held-out ToyCity scenes")
print(f"box head Linear weights: {size_fp32 / 1e6:.2f} MB in float32 -> {size_int8 / 1e6:.2f} MB in INT8")
agreements = [eager.agreement(r, q) for r, q in zip(reference, quantized)]
print("share of confident detections reproduced (same class, box IoU >= 0.9):", [f"{a:.2f}" for a in agreements])
print(f"committed run: int8 {rows['int8']['speedup']:.2f}x overall; box head "
      f"{rows['baseline']['stages_ms']['box_head']:.1f} -> {rows['int8']['stages_ms']['box_head']:.1f} ms")
assert 3.5 < size_fp32 / size_int8 < 4, "about four times smaller: one byte per weight instead of four"
assert min(agreements) >= 0.9, "the confident detections barely move"

# %% [markdown]
# The box head's Linear weights shrink about four times and the confident detections barely move.
#
# ## A large model on the CPU runtimes
#
# The ToyCity model is small, and its images are tiny: fixed costs (Python, the paste, NMS) weigh
# more than they would on a street at Cityscapes resolution. This file times torchvision's R50-FPN
# v2 at Cityscapes' aspect ratio through the same runtimes. Its weights are random (no download
# here), so it says nothing about accuracy; random class scores would pass any threshold and fill
# the detection cap, so the cap is set to a realistic number of detections per image. The larger
# the convolutions, the more lower precision pays: the fastest speed-up here is larger than the
# ToyCity model's.

# %%
deployed = {r["name"]: r for r in load_results("deploy_cpu.json")["variants"]}
r50 = load_results("deploy_r50_cpu.json")
print(f"[results from deploy_r50_cpu.json] model: {r50['model']} | data: {r50['data']} | device: {r50['device']}, "
      f"{r50['threads']} thread(s) | {r50['date']}")
print("command:", r50["command"])
display(Markdown(results_table(r50)))
fastest = max(r50["variants"], key=lambda r: r["speedup"])
fastest_toy = max(deployed.values(), key=lambda r: r["speedup"] if "@" not in r["name"] else 0)
print(f"fastest: {fastest['name']} at {fastest['speedup']:.2f}x the eager model (timing only: random weights, accuracy unknown); "
      f"ToyCity model, same runtimes at its default settings (deploy_cpu.json): {fastest_toy['name']} at {fastest_toy['speedup']:.2f}x")
assert fastest["speedup"] > fastest_toy["speedup"], "lower precision pays more on the larger model"

# %% [markdown]
# ## AP costs do not add up
#
# The fastest rows of `deploy_cpu.json` combine a lower precision with the `fast` settings. Their AP
# costs do not simply add up: changes of a few tenths of a point are as large as the noise between
# two nearly identical models on these scenes, and can even change sign:

# %%
summed = deployed["ov_int8"]["mask_AP_drop"] + deployed["fast"]["mask_AP_drop"]
combined = deployed["ov_int8@fast"]["mask_AP_drop"]
print(f"[results from deploy_cpu.json] mask AP drop: ov_int8 {deployed['ov_int8']['mask_AP_drop']:+.2f} + "
      f"fast {deployed['fast']['mask_AP_drop']:+.2f} = {summed:+.2f} points if they added up; ov_int8@fast measured {combined:+.2f}")
assert abs(combined - summed) > 0.25, "the drops do not add up"

# %% [markdown]
# ## On a GPU
#
# A GPU changes the question. `data_scripts/bench_gpu.py` times the same R50-FPN v2 (random
# weights, the same realistic detection cap) at Cityscapes' full resolution and at half of it, on
# a data-centre GPU that the files name: float32, TF32 tensor cores, float16 (autocast or
# `model.half()`), channels_last and a compiled backbone, interleaved and synchronised as on the
# CPU. TensorRT is not in these files: it needs NVIDIA's own packages, which the machine that
# measured them did not have; on Colab, `pip install torch-tensorrt` is the next step to try.

# %%
half_precision_gain = {}
for name in ("deploy_gpu.json", "deploy_gpu_512.json"):
    gpu = load_results(name)
    half_precision_gain[name] = max(r["speedup"] for r in gpu["variants"] if "fp16" in r["name"])
    print(f"[results from {name}] {gpu['what']} | {gpu['device']} | torch {gpu['torch']} | {gpu['date']}")
    print("command:", gpu["command"])
    display(Markdown(results_table(gpu)))  # speed-ups against the file's reference, fp32
    fastest = max(gpu["variants"], key=lambda r: r["fps"])
    print(f"fastest: {fastest['name']}, {fastest['fps']:.1f} FPS ({fastest['speedup']:.2f}x float32)")
toy_gpu = load_results("bench_gpu.json")
toy_baseline = {r["name"]: r for r in toy_gpu["variants"]}["baseline"]
toy_share = toy_baseline["median_ms"] / fastest["median_ms"]
print(f"[results from bench_gpu.json] the ToyCity model on {toy_gpu['device']}: {toy_baseline['median_ms']:.1f} ms per "
      f"{toy_gpu['input_size'][0]}x{toy_gpu['input_size'][1]} image, mask AP {100 * toy_baseline['mask_AP']:.1f}; "
      f"{toy_share:.0%} of the R50-FPN's fastest time at half resolution")
print("fastest float16 variant against float32:", ", ".join(f"{n} {g:.2f}x" for n, g in half_precision_gain.items()))
assert half_precision_gain["deploy_gpu.json"] > 1.5 > 1.2 > half_precision_gain["deploy_gpu_512.json"], \
    "half precision pays at full resolution and buys little at half of it"
assert toy_share > 0.25, "the tiny model still takes a large share of the big model's time"

# %% [markdown]
# At full resolution the convolutions dominate and half precision on the tensor cores pays: compare
# the float16 rows with float32. At half the resolution the GPU waits for the rest: Python, the
# per-image RPN and NMS, the paste. Lower precision then buys little, and the tiny ToyCity model,
# with a small fraction of the arithmetic, still takes a large share of the big model's time per
# image (the last line above). That is the same lesson as the small model on a CPU, at another
# scale: measure where the time goes before choosing a lever.
#
# ## A live run on this machine
#
# The chapter's harness, on a few images (no AP, to keep it short). Expect other absolute numbers
# than the committed ones: they depend on the CPU, the number of threads and what else is running.

# %%
best = max((r for r in results["variants"] if r["mask_AP_drop"] <= 1.0), key=lambda r: r["speedup"])
live = benchmark.run_benchmark(model, benchmark.toycity_val(environment.pick(2, 10)), list(dict.fromkeys(["baseline", "det_20", "rpn_100", best["name"]])),
                           model_name="ToyCity model", warmup=1, repeats=environment.pick(3, 20), stage_repeats=environment.pick(1, 3),
                           evaluate=False, progress=None)
environment.print_banner(MODEL_NAME, live["data"] + f", {live['images']} images")
print(live["device"])
display(Markdown(results_table(live)))
assert all(row["median_ms"] > 0 for row in live["variants"])
