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
# # From anchors to proposals: decoding, top-k and NMS
#
# For every anchor the RPN head predicts one **objectness** logit and four **deltas**
# $(d_x, d_y, d_w, d_h)$. This chapter follows those numbers through torchvision's
# `RegionProposalNetwork` on a real model:
#
# 1. decode every anchor with its deltas into a box;
# 2. keep the **top-k anchors per FPN level** by objectness (no score threshold at 0.5);
# 3. clip to the image, drop tiny boxes, run **NMS per level**, keep the best `post_nms_top_n`.
#
# and compares it with the simplified pipeline the roadmap describes.

# %% tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else).
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)

# %%
# %matplotlib inline
import torch
import torchvision

from course_lib import environment, exercises
from course_lib.zoo.subjects import chapter_subject
from course_lib.modeling.internals import trace
from course_lib.scratch import boxes
from course_lib.viz import stages, widgets

environment.seed_everything(0)
subject = chapter_subject()
environment.print_banner(subject.model_name, subject.data_name)
t = trace(subject.model, subject.image)
image = stages.image_in_trace_coordinates(subject.image, t)  # proposals live in the resized image
rpn = subject.model.rpn
print(f"{len(t.objectness)} anchors, each with 1 objectness logit and 4 deltas: {tuple(t.rpn_deltas.shape)}")

# %% [markdown]
# ## Decoding: how deltas move an anchor
#
# Let an anchor have centre $(x_a, y_a)$, width $w_a$ and height $h_a$. torchvision's `BoxCoder`
# works on the **centre** and in **relative, log-space** units, divided by per-coordinate weights
# $(w_x, w_y, w_w, w_h)$:
#
# $$ \begin{aligned}
#    x &= x_a + \frac{d_x}{w_x} w_a, & w &= w_a \exp\!\Big(\min\big(\tfrac{d_w}{w_w}, \log\tfrac{1000}{16}\big)\Big), \\
#    y &= y_a + \frac{d_y}{w_y} h_a, & h &= h_a \exp\!\Big(\min\big(\tfrac{d_h}{w_h}, \log\tfrac{1000}{16}\big)\Big).
#    \end{aligned} $$
#
# The RPN uses weights (1, 1, 1, 1), the box head (10, 10, 5, 5); the clamp stops a wild
# prediction from growing a box more than 62.5 times. Relative units make one delta mean the same
# for a 16-pixel and a 512-pixel anchor; log-space keeps widths positive. The roadmap writes the
# update as $x_a + \Delta x$, $w_a + \Delta w$ (pixels added to the corner and the size), and a
# common tutorial version is $x_1 = x_{1,a} + w_a d_x$, $w = w_a e^{d_w}$ on the corner with no
# weights or clamp (`course_lib.scratch.boxes.decode_simple`). Here are all of them on the model's
# actual predictions:

# %%
print("RPN box coder weights     :", rpn.box_coder.weights)
print("box head box coder weights:", subject.model.roi_heads.box_coder.weights)
anchors_all = torch.cat(t.anchors)
ours = boxes.decode(t.rpn_deltas, anchors_all, rpn.box_coder.weights)
assert torch.equal(ours, t.decoded), "course_lib.scratch.boxes.decode reproduces the model's proposals exactly"
simple = boxes.decode_simple(t.rpn_deltas, anchors_all)
additive = anchors_all + t.rpn_deltas  # the roadmap's literal x + dx, w + dw, read as pixels on the corners
best = t.objectness.topk(5).indices
for i in best.tolist():
    print(f"anchor {anchors_all[i].round().tolist()} deltas {[round(v, 2) for v in t.rpn_deltas[i].tolist()]}")
    print(f"   torchvision  {t.decoded[i].round().tolist()}")
    print(f"   corner-based {simple[i].round().tolist()}   additive {additive[i].round().tolist()}")
gap = (simple - t.decoded).abs().max(dim=1).values
print(f"corner-based vs torchvision: median gap {gap.median():.2f} px, max {gap.max():.1f} px over {len(gap)} anchors")
assert gap.max() > 0.5, "growing from the corner instead of the centre moves the box"

# The same deltas on a 16- and a 512-pixel anchor: a shift of half the width, and a wild log-width.
squares = torch.tensor([[0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 512.0, 512.0]])
wild = torch.tensor([[0.5, 0.0, 100.0, 0.0]]).repeat(2, 1)
decoded = rpn.box_coder.decode_single(wild, squares)  # torchvision's own decoder
assert torch.equal(decoded, boxes.decode(wild, squares, rpn.box_coder.weights))
shift = ((decoded[:, 0] + decoded[:, 2]) / 2 - (squares[:, 0] + squares[:, 2]) / 2) / (squares[:, 2] - squares[:, 0])
growth = (decoded[:, 2] - decoded[:, 0]) / (squares[:, 2] - squares[:, 0])
print(f"one delta, two anchors: centre shift {shift.tolist()} anchor widths; width grown {growth.tolist()} times, at most 1000/16 = {1000 / 16}")
assert torch.allclose(shift, torch.tensor(0.5)), "relative units: one delta means the same for every anchor size"
assert torch.allclose(growth, torch.tensor(1000 / 16)), "the clamp caps the growth at 62.5 times"

# %% [markdown]
# ## Step 2: top-k per level, not a score threshold
#
# The roadmap filters with "objectness > 0.5, then sort". torchvision has no such threshold at
# test time (`score_thresh` is 0.0): per FPN level it keeps the `pre_nms_top_n` anchors with the
# highest objectness, whatever their absolute score. Per-level selection keeps the thousands of
# small anchors on the finest map from crowding out the few large ones on coarse maps *before* NMS.
# After NMS the levels do compete: `post_nms_top_n` is one budget for the whole image (Step 3).

# %%
top_n, post_n = rpn.pre_nms_top_n(), rpn.post_nms_top_n()
probability = t.objectness.sigmoid()
print(f"pre_nms_top_n = {top_n} per level, post_nms_top_n = {post_n}, nms_thresh = {rpn.nms_thresh}, score_thresh = {rpn.score_thresh}")
print(f"anchors with objectness > 0.5: {int((probability > 0.5).sum())} of {len(probability)}")
for level, name in enumerate(t.features):
    in_level = int((t.anchor_levels == level).sum())
    kept = int((t.pre_nms_levels == level).sum())
    low = int(((t.pre_nms_levels == level) & (t.pre_nms_scores <= 0.5)).sum())
    print(f"level {name:>4}: {in_level:>6} anchors -> {kept:>5} candidates ({low} of them with objectness <= 0.5)")
    assert kept <= min(top_n, in_level)

# One budget of the same size for all levels instead: the finest level's many anchors take most of it.
one_budget = t.anchor_levels[t.objectness.topk(len(t.pre_nms_levels)).indices]
per_level = [int((t.pre_nms_levels == level).sum()) for level in range(len(t.features))]
global_top = [int((one_budget == level).sum()) for level in range(len(t.features))]
print(f"candidates per level: top-k per level {per_level}; one top-{len(t.pre_nms_levels)} over all anchors {global_top}")
assert int((t.anchor_levels == 0).sum()) == max(int((t.anchor_levels == level).sum()) for level in range(len(t.features)))
assert global_top[-1] < per_level[-1], "a single top-k would crowd out the coarsest level"

# %% [markdown]
# ## Step 3: NMS per level, then the best `post_nms_top_n`
#
# Non-maximum suppression visits boxes from the highest score down and deletes every box that
# overlaps an already kept one by IoU > 0.7. torchvision runs it separately per level
# (`batched_nms`), then keeps the `post_nms_top_n` best survivors overall. Our greedy
# `course_lib.scratch.boxes.nms` keeps exactly the same boxes:

# %%
for level, name in enumerate(t.features):
    sel = t.pre_nms_levels == level
    assert torch.equal(boxes.nms(t.pre_nms_boxes[sel], t.pre_nms_scores[sel], rpn.nms_thresh),
                       torchvision.ops.nms(t.pre_nms_boxes[sel], t.pre_nms_scores[sel], rpn.nms_thresh))
print(f"{len(t.pre_nms_boxes)} candidates -> NMS per level -> {len(t.proposals)} proposals (cap {post_n})")
assert len(t.proposals) <= post_n

# After NMS the levels compete: the proposals are the best survivors of any level, one budget per image.
survivors = torchvision.ops.batched_nms(t.pre_nms_boxes, t.pre_nms_scores, t.pre_nms_levels, rpn.nms_thresh)  # best first
assert torch.equal(t.proposals, t.pre_nms_boxes[survivors[:post_n]]), "post_nms_top_n is global, not per level"
print("per level, survivors of NMS -> proposals kept:", ", ".join(
    f"{name} {int((t.pre_nms_levels[survivors] == level).sum())} -> {int((t.pre_nms_levels[survivors[:post_n]] == level).sum())}"
    for level, name in enumerate(t.features)))

# %%
stages.proposals_before_after_nms(image, (t.pre_nms_boxes, t.pre_nms_scores), (t.proposals, t.proposal_scores))

# %% [markdown]
# torchvision's R50-FPN keeps 1000 proposals per image at test time (`rpn_post_nms_top_n_test`);
# the ToyCity model is configured for fewer, since its images are small. Either way the RPN
# **over-proposes**: many proposals sit on the same object, and the second stage sorts them out.
# We count, for each final detection, how many proposals overlap it with IoU > 0.5:

# %%
if len(t.boxes):
    overlapping = (boxes.box_iou(t.boxes, t.proposals) > 0.5).sum(dim=1)
    print("proposals with IoU > 0.5 per detection:", overlapping.tolist())
    assert (overlapping >= 1).all()
print(f"{len(t.proposals)} proposals -> {len(t.boxes)} detections")

# %% [markdown]
# ## Explore: the NMS threshold
#
# Move the slider: at a low IoU threshold NMS is aggressive and may merge neighbouring objects; at
# 1.0 nothing is suppressed. Every position is drawn in advance, so the slider works on this page
# as it does in Jupyter and Colab.

# %%
level_fine = t.pre_nms_levels == 0
widgets.nms_explorer(image, t.pre_nms_boxes[level_fine], t.pre_nms_scores[level_fine])

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
# ```{exercise} IoU of two boxes
# :label: exercise-iou
#
# NMS rests on IoU. Write `iou(box_a, box_b)` for two `(x1, y1, x2, y2)` lists of floats with
# `x1 <= x2`, `y1 <= y2` (continuous coordinates: the width is `x2 - x1`). Boxes that do not
# overlap, or only touch, have IoU `0`; a box of zero width inside another too. Checked against
# `torchvision.ops.box_iou`.
# ```

# %%
def iou(box_a, box_b):
    raise NotImplementedError  # your code here


exercises.check("iou", iou)

# %% [markdown]
# ````{solution} exercise-iou
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/detection.py
# :pyobject: iou
# ```
# ````

# %% [markdown]
# ```{exercise} Write NMS
# :label: exercise-nms
#
# Write `nms(boxes, scores, iou_threshold)` returning the list of the indices of the kept boxes,
# highest score first. `boxes` is a `Tensor[N, 4]` of (x1, y1, x2, y2), `scores` a `Tensor[N]` of
# distinct scores; you may use `torchvision.ops.box_iou` (or your own IoU). A box is suppressed
# when its IoU with an already kept box is strictly greater than `iou_threshold`: at exactly the
# threshold it is kept. No boxes in: an empty list out. Checked against `torchvision.ops.nms`.
# ```

# %%
import torchvision


def nms(boxes, scores, iou_threshold):
    raise NotImplementedError  # your code here


exercises.check("nms", nms)

# %% [markdown]
# ````{solution} exercise-nms
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/detection.py
# :pyobject: nms
# ```
# ````
