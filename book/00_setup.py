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
#
# **Why torchvision, and what Detectron2 offers.** The course builds on torchvision's
# `maskrcnn_resnet50_fpn`: it is installed with PyTorch (on Colab it is already there), its wheels
# always match the installed torch, and its model is a few readable files that the Week 1 chapters
# open module by module. Detectron2, Meta's research library, is the reference implementation of
# Mask R-CNN: a larger model zoo (deeper backbones, longer schedules, a Cityscapes model), a
# configuration system, and the training and evaluation tooling the papers used. It is built from
# source against one torch version, and its Colab install has broken when Colab upgraded torch;
# its Cityscapes loader and evaluator on the main branch currently fail to import (issue
# facebookresearch/detectron2#5436). The course therefore teaches on torchvision and quotes
# Detectron2's published numbers where they help; the design is the same, so what you learn here
# reads directly in Detectron2's code.

# %% tags=["remove-cell"]
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
from course_lib import environment, zoo
from course_lib.zoo import files

device = environment.device()
print(f"python       {platform.python_version()}")
print(f"torch        {torch.__version__}")
print(f"torchvision  {torchvision.__version__}")
print(f"course_lib   {course_lib.__version__}")
print(f"device       {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
print(f"fast mode    {environment.fast_mode()}  (COURSE_FAST=1 shrinks sizes and iterations)")
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
cityscapes = environment.cityscapes_root()
print(f"COCO-pretrained Mask R-CNN : {coco_status}  (cache: {files.weights_dir()})")
print(f"ToyCity model              : {toycity_status}")
print(f"Cityscapes                 : {cityscapes or 'not found (set CITYSCAPES_DATASET=/path/to/cityscapes)'}")

model_mode = "COCO weights (mapped to urban classes)" if coco_status != "unavailable" else "ToyCity model"
data_mode = "Cityscapes" if cityscapes else "ToyCity"
print(f"\nThe inspection chapters will use: {model_mode}; training and evaluation data: {data_mode}.")
assert toycity_status == "shipped", "the offline model ships with course_lib"
assert coco_status in {"cached", "downloadable", "unavailable"}

# %% [markdown]
# ### Detectron2's model zoo
#
# Detectron2's trained Mask R-CNNs load without installing Detectron2:
# `zoo.load("detectron2:<name>")` downloads the model-zoo file once into the same cache and converts
# it into a torchvision `MaskRCNN` that follows Detectron2's conventions (the appendix *The same
# thing in Detectron2* shows the conversion and the check that its outputs equal Detectron2's).
# The entries, with their backbone, classes and test-time resize:

# %%
from course_lib.classes import CLASSES
from course_lib.zoo import detectron2_weights

for d2_name, d2_entry in detectron2_weights.ENTRIES.items():
    d2_cached = (files.weights_dir() / d2_entry.cache_name).exists()
    print(f"detectron2:{d2_name:<50} R{d2_entry.depth}-FPN  {len(d2_entry.classes):>2} classes  "
          f"short side {d2_entry.min_size}, long side <= {d2_entry.max_size}  "
          f"({'cached' if d2_cached else 'downloads on first load'})")
assert detectron2_weights.class_names("Cityscapes/mask_rcnn_R_50_FPN") == CLASSES, "same classes, same order"

# %% [markdown]
# ## One real forward pass
#
# We load the model the chapters inspect (`zoo.course_model()` picks COCO weights where they can
# be had, else the ToyCity model) and run it on a ToyCity street scene. In evaluation mode, a
# torchvision Mask R-CNN takes a list of `3×H×W` float images in `[0, 1]` and returns, per image,
# a dict of `boxes` (`N×4`, x1 y1 x2 y2 in pixels), `labels`, `scores` and `masks` (`N×1×H×W`
# soft masks in `[0, 1]`).

# %%
from course_lib.classes import CLASSES
from course_lib.data import toycity

model, model_name = zoo.course_model()
image, target = toycity.scene(seed=3, height=256, width=512)
environment.print_banner(model_name, "one ToyCity scene (seed 3)")

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
# ```{exercise} The model's input tensor
# :label: exercise-model_input
#
# Torchvision's detectors take a list of `float32` tensors shaped `[3, H, W]` with values in `[0,
# 1]`; OpenCV and Pillow give `uint8` arrays shaped `[H, W, 3]`. Write `to_model_input(image)`
# that turns such a NumPy array (any `H, W >= 1`, RGB order kept) into such a tensor: `0` becomes
# `0.0` and `255` exactly `1.0`. Checked against torchvision's `to_image` + `to_dtype(scale=True)`.
# ```

# %%
import torch

from course_lib import exercises


def to_model_input(image):
    raise NotImplementedError  # your code here


exercises.check("model_input", to_model_input)

# %% [markdown]
# ````{solution} exercise-model_input
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/foundations.py
# :pyobject: to_model_input
# ```
# ````
