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
# # The heads: class scores, class-specific boxes and masks
#
# After RoI Align every proposal is a small feature tensor, and three branches read it:
#
# * the **classifier** gives one probability per class, background included, for *every* proposal;
# * the **box regressor** gives one refined box *per class* for every proposal;
# * the **mask head** gives one 28 x 28 mask *per class* for every detected box.
#
# Detections are made by post-processing the first two; the mask of the predicted class is picked
# only at the very end. This chapter shows all of these intermediate outputs, which
# `model([image])` never returns, then looks at training: which mask the loss uses, and how the
# five losses add up.

# %% tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else).
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)

# %%
# %matplotlib inline
import copy
import inspect

import torch
from torchvision.models.detection.roi_heads import maskrcnn_loss, paste_masks_in_image

from course_lib import environment, zoo
from course_lib.classes import CLASSES
from course_lib.zoo.subjects import chapter_subject
from course_lib.data.toycity.scene import scene
from course_lib.modeling import coco_heads, maskrcnn
from course_lib.modeling.internals import trace
from course_lib.scratch import boxes
from course_lib.viz import overlay, stages, widgets

environment.seed_everything(0)
subject = chapter_subject()
environment.print_banner(subject.model_name, subject.data_name)
t = trace(subject.model, subject.image)
image = stages.image_in_trace_coordinates(subject.image, t)
print(f"{len(t.proposals)} proposals -> class probabilities {tuple(t.class_probs.shape)}, "
      f"box deltas {tuple(t.box_deltas.shape)} -> {len(t.boxes)} detections -> mask logits {tuple(t.mask_logits.shape)}")
assert len(t.boxes) > 0, "this chapter needs at least one detection"

# %% [markdown]
# ## Class probabilities for every proposal
#
# The classifier sees the whole 7 x 7 RoI feature, flattened, and outputs one score per class:
# one decision per proposal, never per pixel. Below, the softmax of every proposal (rows sorted by
# their best non-background probability). Most proposals are background; a few rows light up.

# %%
stages.class_heatmap(t.class_probs, CLASSES, max_rows=200)

# %% [markdown]
# The proposal that became the top detection, and its probabilities:

# %%
top = int(t.detection_proposal[0])
print(f"detection 0: {CLASSES[int(t.labels[0])]} ({float(t.scores[0]):.2f}) came from proposal {top}")
assert t.class_probs[top, t.labels[0]] == t.scores[0]
stages.class_probabilities(t.class_probs[top], CLASSES, title=f"proposal {top}")

# %% [markdown]
# Use the slider to walk through the most confident proposals, best first: the yellow box is the
# proposal, the red one its refined box for the winning class. (Click the slider, then use the
# arrow keys to step one proposal at a time.)

# %%
widgets.proposal_explorer(subject.image, t, CLASSES)

# %% [markdown]
# ## One box per class, and how detections are made
#
# The regressor predicts $4C$ numbers per proposal: a separate refinement for every class,
# decoded with weights (10, 10, 5, 5). Post-processing then treats every (proposal, class) pair
# as a candidate: drop background, drop scores below `box_score_thresh`, run NMS **per class**
# (IoU 0.5), keep at most `detections_per_img`. So two classes can both claim the same proposal.

# %%
heads = subject.model.roi_heads
assert torch.equal(boxes.decode(t.box_deltas, t.proposals, heads.box_coder.weights).view(-1, len(CLASSES), 4), t.class_boxes)
spread = (t.class_boxes[top, 1:] - t.class_boxes[top, 1:].mean(0)).abs().max()
print(f"proposal {top}: the {len(CLASSES) - 1} class-specific boxes differ by up to {spread:.1f} px")
candidates = int((t.class_probs[:, 1:] > heads.score_thresh).sum())
print(f"score_thresh {heads.score_thresh}, nms_thresh {heads.nms_thresh}, detections_per_img {heads.detections_per_img}")
print(f"{candidates} (proposal, class) candidates -> {len(t.boxes)} detections")
shared = len(t.detection_proposal) - len(t.detection_proposal.unique())
print(f"detections that share their proposal with another detection: {shared}")

# %% [markdown]
# ## Every class's mask
#
# For each detected box the mask head predicts $C$ masks of 28 x 28, one per class. Inference
# keeps only the mask of the predicted class; the others are still computed. Here are all of them
# for the top detection, the predicted one framed in red:

# %%
stages.class_masks(t.mask_logits[0], int(t.labels[0]), CLASSES)

# %%
chosen = t.mask_logits.sigmoid()[torch.arange(len(t.labels)), t.labels]  # the same ops as maskrcnn_inference
assert torch.equal(t.mask_probs[:, 0], chosen), "inference = sigmoid of the predicted class's channel"
widgets.mask_class_picker(t, 0, CLASSES)

# %% [markdown]
# ### A COCO model's whole mask head
#
# With COCO weights the mask head computes a mask for every COCO category, not only for the
# course's classes; reading the model in the course's classes keeps a few of those channels.
# Here are all of COCO's categories for the top detection (with the ToyCity model this cell says
# so and shows nothing more):

# %%
from IPython.display import display

from course_lib.modeling.coco_heads import CocoUrbanMaskLogits, coco_rows
from course_lib.modeling.internals import coco_mask_logits

if isinstance(heads.mask_predictor.mask_fcn_logits, CocoUrbanMaskLogits):
    coco_logits = coco_mask_logits(subject.model, t)  # [D, 91, 28, 28]
    names = zoo.COCO_WEIGHTS.meta["categories"]
    categories = [slot for slot, name in enumerate(names) if name not in ("__background__", "N/A")]
    print(f"COCO mask head: {coco_logits.shape[1]} slots, {len(categories)} categories; "
          f"the course keeps {len(set(coco_rows())) - 1} of them")
    assert len(categories) == 80
    assert torch.equal(coco_logits[:, heads.mask_predictor.mask_fcn_logits.rows], t.mask_logits)
    predicted = categories.index(coco_rows()[int(t.labels[0])])
    display(stages.class_masks(coco_logits[0, categories], predicted, [names[s] for s in categories], columns=10))
else:
    print(f"{subject.model_name}: its mask head predicts the course's {len(CLASSES) - 1} classes only")

# %% [markdown]
# Among COCO's categories there is no rider. COCO annotates a cyclist as a *person* on a separate
# *bicycle*, so its person channel fires on riders too. Read in the course's classes, a COCO
# model gives rider a probability of zero and calls every rider a person
# (`course_lib.modeling.coco_heads.coco_zero_shot`): it cannot tell them apart, because nothing in its training
# ever did. Cityscapes does, by context (a person *on* a two-wheeler). Fine-tuning learns the
# split: `course_lib.modeling.coco_heads.transfer_coco_heads` starts the rider rows from COCO's person rows, and
# the Cityscapes labels then pull the two apart (Week 2).
#
# ## In training, the mask loss reads the ground-truth class
#
# Which of the $C$ masks does the loss train? Not the predicted one: during training torchvision
# takes the mask channel of the **ground-truth** class of the box the RoI was matched to, and
# applies a per-pixel binary cross-entropy between that channel and the ground-truth mask cropped
# to the RoI and resized to 28 x 28. The other channels get no gradient from this RoI at all. The
# code:

# %%
print(inspect.getsource(maskrcnn_loss))

# %% [markdown]
# We check it with a gradient. Take the detected boxes as RoIs, pretend their ground truth is
# their own current mask but with a **different class** than the one predicted, and backpropagate
# the mask loss to the logits of all classes:

# %%
logits = t.mask_logits.clone().requires_grad_(True)
gt_masks = paste_masks_in_image(t.mask_probs, t.boxes, t.image_size)[:, 0] > 0.5
gt_labels = t.labels % (len(CLASSES) - 1) + 1  # another foreground class than the prediction
loss = maskrcnn_loss(logits, [t.boxes], [gt_masks.float()], [gt_labels], [torch.arange(len(t.boxes))])
loss.backward()
touched = logits.grad.abs().sum(dim=(2, 3)) > 0  # [D, C]: which class channels got a gradient
print(f"mask loss {loss.item():.3f}")
print("channels with gradient, per RoI:", [torch.nonzero(row).flatten().tolist() for row in touched[:5]])
assert torch.equal(touched.nonzero()[:, 1], gt_labels[touched.nonzero()[:, 0]]), "only the ground-truth class channel learns"
assert not touched[torch.arange(len(t.labels)), t.labels].any()

# %% [markdown]
# So the person channel learns person shapes from person RoIs only, and a misclassified RoI still
# trains the right class's mask. This decoupling (a sigmoid per class instead of a softmax across
# classes) is what lets masks specialise by class.
#
# ### Does each class need its own mask?
#
# The paper tested the alternative: a **class-agnostic** head that predicts a single
# $28 \times 28$ map whatever the class, so that every positive RoI trains the same map. On COCO it
# was nearly as good (29.7 mask AP against 30.3 class-specific, ResNet-50-C4; He et al. 2017,
# section 4.2). `course_lib.modeling.maskrcnn.ClassAgnosticMaskLogits` is that head: a 1x1 convolution to one
# map, repeated as a view for each class, so torchvision's loss and inference run unchanged.
# The same wrong-class loss as above now trains the one shared map:

# %%
agnostic = maskrcnn.ClassAgnosticMaskLogits(in_channels=8, num_classes=len(CLASSES))
shared_logits = agnostic(torch.randn(len(t.boxes), 8, 28, 28))
loss = maskrcnn_loss(shared_logits, [t.boxes], [gt_masks.float()], [gt_labels], [torch.arange(len(t.boxes))])
loss.backward()
print(f"logits {tuple(shared_logits.shape)} from {agnostic.out_channels} map; "
      f"gradient on the shared map's weights: {agnostic.weight.grad.abs().sum().item():.3f}")
assert torch.equal(shared_logits[:, 1], shared_logits[:, -1]), "every class reads the same map"
assert agnostic.weight.grad.abs().sum() > 0

# %% [markdown]
# On ToyCity the class-specific head won. Two training runs of the ToyCity model, identical but
# for this layer (the recipe before the Week 2 dice term, with and without
# `--class-agnostic-masks`; one run each, and runs differ by a point or two), are recorded in
# the [Experiments](../appendix_experiments.ipynb) appendix:

# %%
from course_lib import results

lever = next(row for row in results.load_results("toycity_levers.json")["levers"] if row["name"] == "class_agnostic")
print(f"[results from toycity_levers.json, commit {lever['source_commit'][:7]}] ToyCity held-out mask AP: "
      f"class-agnostic {lever['segm_AP']:.3f}, class-specific {lever['baseline_segm_AP']:.3f}; {lever['finding']}")

# %% [markdown]
# In ToyCity a rider sits on its two-wheeler, the two boxes nearly
# coincide, and which pixels belong to the instance depends on the class. A per-class map can
# learn "the person, not the bicycle" for rider boxes; a shared one has to average the two.
#
# ## The multi-task loss
#
# In training mode the model returns five losses, and the total torchvision optimises is their
# plain sum:
#
# $$ L = \underbrace{L_\text{objectness} + L_\text{rpn box}}_{\text{RPN}} + \underbrace{L_\text{cls} + L_\text{box} + L_\text{mask}}_{\text{heads}} $$
#
# $L_\text{cls}$ is cross-entropy over $C$ classes, the box losses are smooth-L1 on the deltas of
# positive samples only (for the head: of the ground-truth class's box), $L_\text{mask}$ is the
# per-pixel binary cross-entropy above. We compute them on a ToyCity scene with its exact ground
# truth (on a copy of the model, so its state is untouched; with COCO weights, on the copy that
# fine-tuning starts from, `course_lib.modeling.coco_heads.coco_fine_tuning`, since the zero-shot reading gives a
# ground-truth rider probability zero and an infinite classification loss):

# %%
height, width = 128, 256
array, target = scene(11, height, width)
scene_image = torch.from_numpy(array).permute(2, 0, 1).float() / 255
target = {k: target[k] for k in ("boxes", "labels", "masks")}
zero_shot_coco = isinstance(heads.box_predictor, coco_heads.CocoUrbanBoxPredictor)
trainable = (coco_heads.coco_fine_tuning(subject.model) if zero_shot_coco else copy.deepcopy(subject.model)).train()
environment.print_banner(subject.model_name, f"ToyCity scene 11 ({height}x{width}) with ground truth")
losses = trainable([scene_image], [target])
for name, value in losses.items():
    print(f"{name:<18} {value.item():.3f}")
total = sum(losses.values())
print(f"{'total':<18} {total.item():.3f}")
assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
assert torch.isfinite(total)

# %% [markdown]
# ## Overlapping instances
#
# Each detection gets its own RoI and its own mask, computed independently. Nothing stops two
# masks from claiming the same pixel; the model does not reason about "person 1 versus person 2".
# We count such pixels, then draw the result with one colour per instance (same-class instances in
# lighter shades); where masks overlap, the more confident instance is painted on top.

# %%
threshold = 0.5
confident = t.final["scores"] >= threshold
binary = t.final["masks"][confident, 0] >= 0.5
claims = binary.sum(0)
print(f"{int(confident.sum())} detections with score >= {threshold}; "
      f"{int((claims > 1).sum())} pixels are claimed by more than one of their masks")
overlay.detections_overlay(subject.image, t.final, CLASSES, score_threshold=threshold)

# %% [markdown]
# **Takeaways.** The classifier scores every proposal for every class; the regressor proposes a
# box per class; detections are (proposal, class) pairs that survive a threshold and per-class
# NMS; the mask head predicts every class's mask and inference keeps the predicted one, while
# training reads the ground-truth one; the five losses are summed with equal weights.

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
# ```{exercise} Pick the class-specific mask
# :label: exercise-class_masks
#
# The mask head returns logits `[R, C, M, M]`, one mask per class for every RoI. Write
# `class_masks(mask_logits, labels)` returning the mask probabilities `[R, M, M]` of each RoI's
# own class (`labels[r]`, an index into the `C` channels; channel `0` is the background's); with no
# RoI (`R = 0`) a `[0, M, M]` tensor. Checked against torchvision's `maskrcnn_inference`.
# ```

# %%
import torch

from course_lib import exercises


def class_masks(mask_logits, labels):
    raise NotImplementedError  # your code here


exercises.check("class_masks", class_masks)

# %% [markdown]
# ````{solution} exercise-class_masks
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/heads.py
# :pyobject: class_masks
# ```
# ````

# %% [markdown]
# ```{exercise} The mask loss on the ground-truth class
# :label: exercise-mask_loss
#
# Write `mask_loss(mask_logits, labels, targets)`: Mask R-CNN's mask loss for logits `[R, C, M,
# M]`, ground-truth labels `[R]` and binary float targets `[R, M, M]`, one scalar tensor: the mean
# binary cross-entropy over the pixels of each RoI's ground-truth channel. With no positive RoI
# (`R = 0`) the loss is `mask_logits.sum() * 0`, a zero that keeps the graph, never a NaN. Checked
# against torchvision's `maskrcnn_loss`.
# ```

# %%
import torch
import torch.nn.functional as F


def mask_loss(mask_logits, labels, targets):
    raise NotImplementedError  # your code here


exercises.check("mask_loss", mask_loss)

# %% [markdown]
# ````{solution} exercise-mask_loss
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/heads.py
# :pyobject: mask_loss
# ```
# ````
