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
# # Your environment
#
# Before we open Mask R-CNN up, this chapter checks what your machine can do and decides which
# mode the rest of the course runs in:
#
# * **device** — a CUDA GPU if torch sees one, otherwise the CPU (`COURSE_DEVICE` overrides);
# * **weights** — torchvision's COCO-pretrained Mask R-CNN if it is cached or can be downloaded,
#   and always the small ToyCity model that ships with `course_lib`;
# * **data** — Cityscapes if `CITYSCAPES_DATASET` points at a complete copy, otherwise ToyCity.
#
# It ends by running one real Mask R-CNN forward pass, which proves that torchvision's compiled
# operators (`nms`, `roi_align`) work in your installation.

# %%
# Colab: install the course library (a no-op everywhere else).
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)

# %%
import platform

import numpy as np
import torch
import torchvision

import course_lib
from course_lib import runtime, zoo

device = runtime.device()
print(f"python       {platform.python_version()}")
print(f"torch        {torch.__version__}")
print(f"torchvision  {torchvision.__version__}")
print(f"course_lib   {course_lib.__version__}")
print(f"device       {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
print(f"fast mode    {runtime.fast_mode()}  (COURSE_FAST=1 shrinks sizes and iterations)")
assert device.type in {"cpu", "cuda"}

# %% [markdown]
# ## torchvision's compiled operators
#
# Mask R-CNN's non-maximum suppression and RoI Align are C++/CUDA operators inside torchvision.
# A torch/torchvision version mismatch shows up here as `operator torchvision::nms does not
# exist`; if you see it, reinstall matching versions (Colab's preinstalled pair always matches).

# %%
boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float32)
scores = torch.tensor([0.9, 0.8, 0.7])
kept = torchvision.ops.nms(boxes, scores, iou_threshold=0.5)
print("nms keeps", kept.tolist())
assert kept.tolist() == [0, 2], "the two overlapping boxes (IoU 0.68) collapse to the better one"

features = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
pooled = torchvision.ops.roi_align(features, [torch.tensor([[0.0, 0.0, 4.0, 4.0]])], output_size=1, aligned=True)
print("roi_align of the whole map:", pooled.item(), "= mean of the map:", features.mean().item())
assert torch.isclose(pooled, features.mean()).all()

# %% [markdown]
# ## Weights and data: which mode will the course run in?

# %%
coco_status = zoo.status("coco")
toycity_status = zoo.status("toycity")
cityscapes = runtime.cityscapes_root()
print(f"COCO-pretrained Mask R-CNN : {coco_status}  (cache: {zoo.weights_dir()})")
print(f"ToyCity model              : {toycity_status}")
print(f"Cityscapes                 : {cityscapes or 'not found (set CITYSCAPES_DATASET=/path/to/cityscapes)'}")

model_mode = "COCO weights (mapped to urban classes)" if coco_status != "unavailable" else "ToyCity model"
data_mode = "Cityscapes" if cityscapes else "ToyCity"
print(f"\nThe inspection chapters will use: {model_mode}; training and evaluation data: {data_mode}.")
assert toycity_status == "shipped", "the offline model ships with course_lib"
assert coco_status in {"cached", "downloadable", "unavailable"}

# %% [markdown]
# ## One real forward pass
#
# We load the model the chapters inspect (`zoo.course_model()` picks COCO weights where they can
# be had, else the ToyCity model) and run it on a ToyCity street scene. In evaluation mode, a
# torchvision Mask R-CNN takes a list of `3×H×W` float images in `[0, 1]` and returns, per image,
# a dict of `boxes` (`N×4`, x1 y1 x2 y2 in pixels), `labels`, `scores` and `masks` (`N×1×H×W`
# soft masks in `[0, 1]`).

# %%
from course_lib import toycity
from course_lib.classes import CLASSES

model, model_name = zoo.course_model()
image, target = toycity.scene(seed=3, height=256, width=512)
runtime.print_banner(model_name, "one ToyCity scene (seed 3)")

with torch.inference_mode():
    output = model([torch.from_numpy(image).permute(2, 0, 1).float().div(255).to(device)])[0]

for key in ("boxes", "labels", "scores", "masks"):
    print(f"{key:7s} {tuple(output[key].shape)}")
confident = output["scores"] > 0.5
print("confident detections:", [CLASSES[i] for i in output["labels"][confident].tolist()])
print("ground truth objects:", [CLASSES[i] for i in target["labels"].tolist()])

assert output["masks"].shape[-2:] == image.shape[:2]
assert len(output["boxes"]) == len(output["scores"]) == len(output["masks"])
if model_name.startswith("ToyCity"):  # what COCO weights find on a synthetic scene is not known in advance
    assert confident.sum() >= 1, "the shipped ToyCity model finds at least one object in a ToyCity scene"

# %% [markdown]
# If every cell above ran, your environment is ready. The next chapters start with the feature
# maps a backbone computes and end, in Week 4, with a finished project.
