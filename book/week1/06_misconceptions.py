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
# # Common misconceptions, tested
#
# Explanations of Mask R-CNN repeat a few claims, some wrong, some half right. Instead of arguing,
# each section below states a claim, computes something on a real model that decides it, and
# asserts the result. The verdicts: **false**, **true**, or **half true** (with the correction).

# %% tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else).
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)

# %%
# %matplotlib inline
import copy
import math

import torch
from matplotlib.figure import Figure
from torch import nn

from course_lib import environment
from course_lib.zoo.subjects import chapter_subject
from course_lib.modeling.internals import trace
from course_lib.scratch import boxes
from course_lib.utils import timing

environment.seed_everything(0)
subject = chapter_subject()
environment.print_banner(subject.model_name, subject.data_name)
model = subject.model
t = trace(model, subject.image)
num_classes = t.class_probs.shape[1]
print(f"{len(t.proposals)} proposals, {len(t.boxes)} detections, {num_classes} classes (background included)")

# %% [markdown]
# ## 1. "The classification branch looks at individual pixels" — false
#
# The classifier receives one pooled feature per proposal (a `C x 7 x 7` tensor, flattened) and
# returns one score vector per proposal. There is no per-pixel output anywhere in that branch:

# %%
heads = model.roi_heads
pooled = heads.box_roi_pool(t.features, [t.proposals], [t.image_size])
hidden = heads.box_head(pooled)
logits, _ = heads.box_predictor(hidden)
print(f"RoI features {tuple(pooled.shape)} -> box head {tuple(hidden.shape)} -> class logits {tuple(logits.shape)}")
assert logits.shape == (len(t.proposals), num_classes)
assert torch.equal(logits, t.class_logits)

# %% [markdown]
# (The roadmap gives the RoI feature as 7 x 7 x 256: that is the R50-FPN's width. The printed
# shape is the width of the model in use.)
#
# ## 2. "The mask head refines the bounding boxes" — false
#
# Boxes come from the box regressor, before the mask head runs. We scramble the mask head of a copy
# of the model and run it again: every box, label and score stays identical, only the masks change.

# %%
scrambled = copy.deepcopy(model)
with torch.no_grad():
    for parameter in scrambled.roi_heads.mask_predictor.parameters():
        parameter.copy_(torch.randn_like(parameter))
ours = t.final  # equal to model([image]) (tested in course_lib)
with torch.no_grad():
    (other,) = scrambled([subject.image])
for key in ("boxes", "labels", "scores"):
    assert torch.equal(ours[key], other[key]), key
print("boxes, labels, scores identical; masks differ:", not torch.equal(ours["masks"], other["masks"]))
assert len(ours["masks"]) == 0 or not torch.equal(ours["masks"], other["masks"])

# %% [markdown]
# ## 3. "The mask head outputs one mask per proposal" — false
#
# It outputs one 28 x 28 mask **per class** for every detected box, including a channel for the
# background class (torchvision's COCO model has 91 channels, the 80 classes plus background and
# unused ids; the course's models have 9). Inference picks the predicted class's channel:

# %%
print("mask logits:", tuple(t.mask_logits.shape), "= [detections, classes, 28, 28]")
assert t.mask_logits.shape[1] == num_classes
assert torch.equal(t.mask_probs[:, 0], t.mask_logits.sigmoid()[torch.arange(len(t.labels)), t.labels])

# %% [markdown]
# ## 4. "The mask loss is computed for the predicted class" — half true
#
# At inference the *predicted* class's mask is used. In training, the loss uses the channel of the
# **ground-truth** class of the RoI (chapter 5 shows the gradient). The code says it directly:
# `maskrcnn_loss` indexes the logits with the labels of the matched ground-truth boxes.

# %%
import inspect

from torchvision.models.detection.roi_heads import maskrcnn_loss

source = inspect.getsource(maskrcnn_loss)
print([line.strip() for line in source.splitlines() if "gt_label[idxs]" in line][0])
assert "gt_label[idxs]" in source

# %% [markdown]
# ## 5. "The RPN proposes exactly one box per object" — false
#
# It proposes hundreds to a thousand boxes, and several overlap each object:

# %%
if len(t.boxes):
    per_detection = (boxes.box_iou(t.boxes, t.proposals) > 0.5).sum(dim=1)
    print(f"{len(t.proposals)} proposals; proposals with IoU > 0.5 per detection: min {int(per_detection.min())}, "
          f"median {int(per_detection.median())}, max {int(per_detection.max())}")
    assert len(t.proposals) > len(t.boxes)

# %% [markdown]
# ## 6. "The RPN keeps anchors with objectness > 0.5" — false
#
# torchvision keeps the `pre_nms_top_n` best anchors **per FPN level**, whatever their score (its
# `score_thresh` is 0). Anchors far below 0.5 can therefore become proposals:

# %%
rpn = model.rpn
print(f"score_thresh = {rpn.score_thresh}, pre_nms_top_n = {rpn.pre_nms_top_n()} per level")
print(f"proposals with objectness < 0.5: {int((t.proposal_scores < 0.5).sum())} of {len(t.proposal_scores)}; "
      f"lowest {float(t.proposal_scores.min()):.3f}")
# the rule holds for any weights: no score threshold, only the top-k (how many fall under 0.5
# depends on the weights; with the course's trained models, many do)
assert rpn.score_thresh == 0.0 and len(t.proposal_scores) > 0, "the RPN keeps a top-k, not a threshold"

# %% [markdown]
# ## 7. "Anchors must fit inside the stride cell (the 16 x 16 region)" — false
#
# Anchors are centred on their position but sized for objects, not for the cell. On every level
# the smallest anchor is already larger than the stride:

# %%
for name, level_anchors, (stride, _) in zip(t.features, t.anchors, t.strides):
    sides = (level_anchors[:, 2:] - level_anchors[:, :2]).min(dim=1).values
    print(f"level {name:>4}: stride {stride:>2}, shortest anchor side {float(sides.min()):.0f} px, longest {float((level_anchors[:, 2:] - level_anchors[:, :2]).max()):.0f} px")
    assert float(sides.min()) >= stride

# %% [markdown]
# ## 8. "Each channel detects exactly one rigid pattern" — false
#
# Take the backbone's first convolution, find the filter that responds most to a vertical edge,
# and rotate the edge step by step. The response changes gradually with the angle (and flips sign
# when the edge's dark side flips): a channel responds by degree, not all-or-nothing. Deeper
# channels mix many such graded inputs.

# %%
first_conv = next(m for m in model.backbone.modules() if isinstance(m, nn.Conv2d))
size = first_conv.kernel_size[0] * 3
ys, xs = torch.meshgrid(torch.arange(size) - size // 2, torch.arange(size) - size // 2, indexing="ij")
angles = list(range(0, 181, 15))


def edge(angle: float) -> torch.Tensor:
    """A dark-to-bright step edge through the centre; 0 degrees = vertical edge."""
    normal = (math.cos(math.radians(angle)), math.sin(math.radians(angle)))
    return (xs * normal[0] + ys * normal[1] > 0).float().expand(3, -1, -1)


with torch.no_grad():
    centre = [first_conv(edge(a)[None])[0, :, (size // 2) // first_conv.stride[0], (size // 2) // first_conv.stride[1]] for a in angles]
responses = torch.stack(centre)  # [angles, filters]
best = int(responses[0].argmax())
curve = responses[:, best]
print(f"filter {best} of {first_conv}: response by angle", [round(float(v), 2) for v in curve])
distinct = len(set(round(float(v), 3) for v in curve))
assert distinct > 3, "graded, not binary"
fig = Figure(figsize=(6, 2.8), layout="constrained")
ax = fig.subplots()
ax.plot(angles, curve.numpy(), "o-")
ax.set_xlabel("edge angle (degrees, 0 = vertical)")
ax.set_ylabel(f"filter {best} response")
fig

# %% [markdown]
# ## 9. "Mask R-CNN runs at 5-10 FPS" — depends entirely on the hardware
#
# Speed figures are properties of a model *and* a machine and an image size. The model timed
# below is this chapter's model (named in the banner), at its own input size, on whatever machine
# runs the page: it is not the R50-FPN the folklore is about, so its frames per second answer
# nothing about "5-10 FPS". [Where the time goes](../week3/01_where_the_time_goes.ipynb) times a
# full-size R50-FPN.

# %%
device = next(model.parameters()).device
with torch.no_grad():  # the first call pays for lazy set-up: warm up, then the median of a few
    speed = timing.summary(timing.repeat(lambda _: len(model([subject.image])[0]["labels"]), device, warmup=1,
                                         repeats=environment.pick(3, 7)))
environment.print_banner(subject.model_name, f"{subject.data_name}, this machine, {torch.get_num_threads()} threads")
print(f"{speed.median * 1000:.0f} ms per image ({1 / speed.median:.1f} FPS), median of {speed.n} runs, on {device} "
      f"at {t.image_size[0]}x{t.image_size[1]}")

# %% [markdown]
# Week 3 measures where this time goes and how to cut it.
#
# ## 10. "A grid detector cannot separate objects in the same cell; Mask R-CNN can" — half true
#
# The original YOLO let each cell of a coarse grid predict a fixed, small number of boxes, so two
# objects whose centres fall into one cell competed for them. Modern YOLOs predict at several
# strides and, like Mask R-CNN, rely on NMS; Mask R-CNN's advantage is that every proposal gets
# its own RoI and its own mask. How often do two objects share a stride-32 cell in street scenes,
# and does our model find both? We count on ToyCity scenes with exact ground truth:

# %%
from course_lib.data.toycity.scene import scene

cell, height = 32, min(t.image_size[0], 512)
shared_pairs, both_found = 0, 0
for seed in range(100, 100 + environment.pick(3, 20)):
    array, target = scene(seed, height, 2 * height)
    centres = ((target["boxes"][:, :2] + target["boxes"][:, 2:]) / 2 / cell).floor()
    with torch.no_grad():
        (found,) = model([torch.from_numpy(array).permute(2, 0, 1).float() / 255])
    confident = found["boxes"][found["scores"] >= 0.5]
    matched = (boxes.box_iou(target["boxes"], confident) >= 0.5).any(dim=1) if len(confident) else torch.zeros(len(centres), dtype=torch.bool)
    for i in range(len(centres)):
        for j in range(i + 1, len(centres)):
            if torch.equal(centres[i], centres[j]):
                shared_pairs += 1
                both_found += int(matched[i] and matched[j])
print(f"pairs of objects whose centres share a {cell} x {cell} cell: {shared_pairs}; both detected (IoU >= 0.5): {both_found}")

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
# ```{exercise} Label anchors for the RPN
# :label: exercise-anchor_labels
#
# Misconception six said the RPN does not keep anchors above an objectness score; in training it
# labels them by IoU. Write `anchor_labels(iou)` for the float IoU matrix `[G, A]` (`G, A >= 1`) of
# ground-truth boxes with anchors, returning a float `Tensor[A]`: `1.0` object when the anchor's
# best IoU is `>= 0.7`, `0.0` background when it is `< 0.3`, `-1.0` ignored in between; then each
# box's best anchors, every anchor tied at that box's maximum, are objects whatever their IoU (even
# `0`, for a box that overlaps nothing: torchvision does so). Checked against
# `Matcher(0.7, 0.3, allow_low_quality_matches=True)`.
# ```

# %%
import torch

from course_lib import exercises


def anchor_labels(iou):
    raise NotImplementedError  # your code here


exercises.check("anchor_labels", anchor_labels)

# %% [markdown]
# ````{solution} exercise-anchor_labels
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/heads.py
# :pyobject: anchor_labels
# ```
# ````

# %% [markdown]
# ```{exercise} Top-k per level, not a score threshold
# :label: exercise-top_k_per_level
#
# Write `top_k_per_level(scores, levels, k)`: a list of the indices of the `k` highest scores of
# each pyramid level (`levels[i]`, an integer, is the level of score `i`; scores are distinct), the
# levels in increasing order, best first within a level; a level with fewer than `k` scores gives
# all of them, and no scores give `[]`. This is how the RPN picks its candidates before NMS.
# Checked against torchvision's `RegionProposalNetwork._get_top_n_idx`.
# ```

# %%
import torch


def top_k_per_level(scores, levels, k):
    raise NotImplementedError  # your code here


exercises.check("top_k_per_level", top_k_per_level)

# %% [markdown]
# ````{solution} exercise-top_k_per_level
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/heads.py
# :pyobject: top_k_per_level
# ```
# ````
