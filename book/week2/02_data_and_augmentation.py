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
# # Data and augmentation
#
# A detector learns only what its data loader hands it. This chapter follows one training sample
# from the files on disk to the tensors Mask R-CNN receives:
#
# 1. the **sample format** torchvision's detection models expect, and `tv_tensors`, which let
#    augmentations move images, masks and boxes together;
# 2. how **Cityscapes** stores instances (one 16-bit PNG of instance ids per image), including its
#    *group* regions, and how `course_lib.data.cityscapes.CityscapesInstances` reads them;
# 3. what the urban classes look like in numbers: how many objects of each class, and how small;
# 4. **augmentation** with `torchvision.transforms.v2`, and the one place where it quietly goes
#    wrong for instance segmentation: boxes after a rotation.
#
# Everything runs offline on **ToyCity**, the course's synthetic street scenes, written in the
# exact Cityscapes file layout. If you have Cityscapes and set `CITYSCAPES_DATASET`, the same
# cells also show a real image.

# %% tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else).
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)

# %%
import tempfile
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.ops import box_iou
from torchvision.transforms.v2 import functional as F

from course_lib import environment
from course_lib.classes import CLASS_COLORS, CLASSES, INDEX_TO_CITYSCAPES_ID
from course_lib.data.augment import BoxesFromMasks, train_transforms
from course_lib.data.cityscapes import CityscapesInstances, read_instance_ids
from course_lib.data.toycity import ToyCityDataset, scene
from course_lib.data.toycity.export import write_cityscapes
from course_lib.structures.instances import boxes_from_masks
from course_lib.viz import overlay

environment.seed_everything(0)
HEIGHT, WIDTH = 128, 256  # ToyCity's training resolution (the course's CPU model works at this size)
N_STATS = environment.pick(20, 300)  # scenes for the class statistics


def show(image, target, boxes=None, title="", ax=None):
    """Masks and boxes of a target over its image (boxes default to the target's)."""
    canvas = overlay.draw_masks_and_boxes(image, target["masks"].bool(), target["boxes"] if boxes is None else boxes,
                                      overlay.class_colors(target["labels"]))
    ax = ax or plt.subplots(figsize=(8, 4))[1]
    ax.imshow(canvas.permute(1, 2, 0))
    ax.set_title(title)
    ax.axis("off")
    return ax


# %% [markdown]
# ## One sample: an image and a dictionary of per-instance tensors
#
# torchvision's Mask R-CNN takes a *list* of images (they may differ in size) and, for training,
# a list of target dictionaries. For an image with $N$ objects, a target holds
#
# | key | shape, type | meaning |
# |---|---|---|
# | `boxes` | $[N, 4]$ float | $(x_1, y_1, x_2, y_2)$ in pixels |
# | `labels` | $[N]$ int64 | class index, 1..8 (0 is background) |
# | `masks` | $[N, H, W]$ uint8 | one binary mask per object |
#
# plus bookkeeping used by evaluation (`image_id`, `area`, `iscrowd`). ToyCity adds `occlusion`
# (the fraction of each object hidden by others) and `amodal_masks` (the full, unoccluded shapes).
#
# The image is a `tv_tensors.Image`, the boxes a `tv_tensors.BoundingBoxes` that knows its format
# and canvas size, the masks a `tv_tensors.Mask`. These are ordinary tensors with a type tag: the
# tag tells each `transforms.v2` transform how to treat them (bilinear resampling for the image,
# nearest for masks, coordinate maths for boxes).

# %%
image, target = ToyCityDataset(1, seed=3, height=HEIGHT, width=WIDTH)[0]
environment.print_banner("no model", f"ToyCity scene 3, {HEIGHT}x{WIDTH}")
print("image:", type(image).__name__, tuple(image.shape), image.dtype)
for key, value in target.items():
    print(f"{key:13s}", type(value).__name__, tuple(value.shape), value.dtype)
print("classes:", [CLASSES[int(label)] for label in target["labels"]])
show(image, target, title="a ToyCity sample: masks and tight boxes")
assert len(target["boxes"]) == len(target["masks"]) == len(target["labels"])
assert torch.equal(boxes_from_masks(target["masks"]), target["boxes"].as_subclass(torch.Tensor))

# %% [markdown]
# ## How Cityscapes stores instances
#
# Cityscapes ships, for every image `leftImg8bit/{split}/{city}/{name}_leftImg8bit.png`, a ground
# truth file `gtFine/{split}/{city}/{name}_gtFine_instanceIds.png`: a **16-bit** image where each
# pixel holds
#
# $$
# \text{id} = \begin{cases} 1000 \cdot \text{label id} + k & \text{object } k \text{ of a class with instances,} \\
# \text{label id} & \text{road, sky, } \dots \text{, and group regions.} \end{cases}
# $$
#
# So `26003` is the fourth car (label id 26) and a plain `26` on a car-shaped blob is a **car
# group**: several cars annotated as one region because they could not be separated. The official
# evaluation neither expects a detector to find a group nor punishes a detection that lies on one.
# `CityscapesInstances` therefore drops groups by default (for training: torchvision's Mask R-CNN
# has no notion of an ignore region and would learn the whole cluster as one car) and returns them
# as `iscrowd=1` regions with `crowd=True` (for evaluation: pycocotools ignores detections on crowd
# regions, which matches the Cityscapes rule).
#
# The eight classes are the label table's entries with instances that are not ignored in
# evaluation; `caravan` and `trailer` have instances but are ignored, so the reader skips them.
#
# We write a few ToyCity scenes in this exact layout (small objects become group regions, as in
# the real data) and read them back.

# %%
print({CLASSES[index]: label_id for index, label_id in INDEX_TO_CITYSCAPES_ID.items()})
export_root = Path(tempfile.mkdtemp(prefix="toycity_cityscapes_"))
write_cityscapes(export_root, "val", [scene(seed, HEIGHT, WIDTH, semantic=True) for seed in range(4)], group_area=80)
print(sorted(str(p.relative_to(export_root)) for p in export_root.rglob("*_000000_000000*")))

ids = read_instance_ids(export_root / "gtFine/val/toycity/toycity_000000_000000_gtFine_instanceIds.png")
print("ids in image 0:", np.unique(ids).tolist())

fig, axes = plt.subplots(1, 2, figsize=(12, 3))
for ax, crowd in zip(axes, (False, True)):
    image_cs, target_cs = CityscapesInstances(export_root, "val", crowd=crowd)[0]
    show(image_cs, target_cs, ax=ax, title=f"crowd={crowd}: {len(target_cs['labels'])} entries, "
                                           f"{int(target_cs['iscrowd'].sum())} crowd")
plt.show()
assert all(value >= 1000 or value < 34 for value in np.unique(ids).tolist())

# %% [markdown]
# With your own copy of Cityscapes (`python data_scripts/download_cityscapes.py --dest DIR`, which
# asks for *your* account and never stores the password), point `CITYSCAPES_DATASET` at it and the
# next cell shows a real validation image at half resolution (image resized bilinearly, the id
# map with nearest neighbour so that no id is blended into a neighbouring one).

# %%
if environment.cityscapes_root() is not None:
    image_real, target_real = CityscapesInstances(split="val", scale=0.5, crowd=True)[0]
    environment.print_banner("no model", "Cityscapes val, first image, scale 0.5")
    show(image_real, target_real, title="Cityscapes val (groups shown as crowd regions)")
    plt.show()
else:
    print("CITYSCAPES_DATASET is not set (or incomplete): skipping the real Cityscapes image.")

# %% [markdown]
# ## The classes in numbers
#
# Two numbers predict much of a detector's per-class accuracy: how many training examples a
# class has, and how large its objects are. COCO calls an object *small* below $32^2$ pixels,
# *medium* below $96^2$ and *large* above, and reports AP separately for each range (APs, APm,
# APl). On Cityscapes as in ToyCity, people and cars dominate, trains are rare, and distant
# objects are only a few dozen pixels across. Count them on the scenes you train on:

# %%
counts, sizes = Counter(), {name: [] for name in CLASSES[1:]}
for _, t in ToyCityDataset(N_STATS, seed=0, height=HEIGHT, width=WIDTH):
    for label, area in zip(t["labels"].tolist(), t["area"].tolist()):
        counts[CLASSES[label]] += 1
        sizes[CLASSES[label]].append(area)
environment.print_banner("no model", f"ToyCity scenes 0..{N_STATS - 1}, {HEIGHT}x{WIDTH}")
fig, (ax_count, ax_size) = plt.subplots(1, 2, figsize=(12, 3.5))
names = list(CLASSES[1:])
ax_count.bar(names, [counts[n] for n in names], color=[np.array(CLASS_COLORS[n]) / 255 for n in names])
ax_count.set_title("objects per class")
ax_size.boxplot([sizes[n] or [0] for n in names], tick_labels=names)
ax_size.set_yscale("log")
ax_size.axhline(32**2, color="gray", linestyle="--", label="small / medium (32²)")
ax_size.set_title("object area in pixels")
ax_size.legend()
for ax in (ax_count, ax_size):
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
fig.tight_layout()
plt.show()
all_areas = np.concatenate([np.asarray(v) for v in sizes.values() if v])
print(f"{len(all_areas)} objects; {np.mean(all_areas < 32**2):.0%} small, {np.mean(all_areas >= 96**2):.0%} large")
assert counts["person"] > counts["train"]

# %% [markdown]
# ## Augmentation with `transforms.v2`
#
# `course_lib.data.augment.train_transforms()` composes four random changes that a street camera
# could plausibly produce:
#
# * **horizontal flip** (streets are left-right symmetric; never flip vertically);
# * **scale jitter** as a zoom *inside a fixed canvas*, $s \in [0.8, 1.25]$. Resizing the whole
#   image would be pointless: Mask R-CNN's own transform resizes every input to `min_size` and
#   would undo it;
# * a **small rotation** (up to $\pm 10°$: a tilted camera, not an upside-down street);
# * **colour jitter** of brightness, contrast, saturation and hue (weather, exposure, camera).
#
# Every transform receives `(image, target)` and changes each `tv_tensor` in it consistently.

# %%
augment = train_transforms()
fig, axes = plt.subplots(2, 3, figsize=(14, 4.5))
show(image, target, title="original", ax=axes[0, 0])
for ax in axes.flat[1:]:
    augmented_image, augmented = augment(image, target)
    show(augmented_image, augmented, title=f"augmented: {len(augmented['labels'])} objects", ax=ax)
    assert len(augmented["labels"]) == len(augmented["masks"]) == len(augmented["boxes"])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Boxes after a rotation: loose unless recomputed
#
# A `BoundingBoxes` carries four numbers, not a shape. To rotate a box, v2 rotates its four
# corners and takes their enclosing axis-aligned box. That box always contains the object, but
# for anything that does not fill its box (a person, a bicycle, the rounded front of a car) it
# is too large: after rotating by $\theta$, a box of width $w$ and height $h$ becomes
#
# $$
# w' = w\,|\cos\theta| + h\,|\sin\theta|, \qquad h' = w\,|\sin\theta| + h\,|\cos\theta|,
# $$
#
# whatever the object inside. The mask, however, is rotated pixel by pixel, so its tight box is
# exact. `BoxesFromMasks` recomputes every box from its mask; the training pipeline calls it after
# the affine transform, then `SanitizeBoundingBoxes` drops instances that left the frame.
#
# Below: a rotation by 30° (three times the training range, to make the effect visible). Red:
# v2's rotated box; green: the box of the rotated mask.

# %%
angle = 30.0
rotated_image = F.rotate(image, angle)
rotated = dict(target, boxes=F.rotate(target["boxes"], angle), masks=F.rotate(target["masks"], angle))
_, tightened = BoxesFromMasks()(rotated_image, rotated)
visible = tightened["area"] > 0
loose = rotated["boxes"].as_subclass(torch.Tensor)[visible]
tight = tightened["boxes"].as_subclass(torch.Tensor)[visible]
iou = box_iou(loose, tight).diagonal()

canvas = overlay.draw_masks_and_boxes(rotated_image, tightened["masks"][visible].bool(), colors="yellow", alpha=0.4)
canvas = overlay.draw_masks_and_boxes(canvas, boxes=loose, colors="red")
canvas = overlay.draw_masks_and_boxes(canvas, boxes=tight, colors="lime")
plt.figure(figsize=(8, 4))
plt.imshow(canvas.permute(1, 2, 0))
plt.axis("off")
plt.title(f"rotation {angle:.0f}°: red = v2 box, green = box of the rotated mask")
plt.show()
environment.print_banner("no model", f"ToyCity scene 3, rotated {angle:.0f}°")
print("IoU(v2 box, tight box) per object:", [round(v, 2) for v in iou.tolist()])
print(f"mean {iou.mean():.2f}")
assert iou.mean() < 0.9  # v2's boxes are clearly loose at 30°
assert torch.equal(tight, boxes_from_masks(tightened["masks"][visible]))

# %% [markdown]
# A loose box is not a harmless approximation. The RPN and the box head are trained to regress
# onto these boxes, so a model trained on loose boxes learns to predict loose boxes, and its box
# AP at IoU 0.75 drops even when it "sees" every object. The mask head suffers too: it predicts a
# $28 \times 28$ mask *inside* the box, so a loose box spends its resolution on background.
#
# ## Sanitising: instances that leave the frame
#
# A strong zoom pushes objects out of the picture. Their masks become empty (or a few pixels)
# and their boxes degenerate. `SanitizeBoundingBoxes` removes every instance whose box is under one
# pixel wide or high, and with it the matching row of every per-instance tensor: masks are found
# automatically, while `labels`, `iscrowd`, `area` and ToyCity's `occlusion` are passed through
# its `labels_getter` (without `labels` it cannot know which tensors to filter, and refuses to
# run).

# %%
zoom = train_transforms(scale_range=(2.0, 2.0), max_rotation=0.0, flip_p=0.0, color=0.0)
zoomed_image, zoomed = zoom(image, target)
fig, axes = plt.subplots(1, 2, figsize=(12, 3))
show(image, target, title=f"before: {len(target['labels'])} objects", ax=axes[0])
show(zoomed_image, zoomed, title=f"zoom x2, sanitised: {len(zoomed['labels'])} objects", ax=axes[1])
plt.show()
for key in ("boxes", "masks", "labels", "area", "iscrowd", "occlusion", "amodal_masks"):
    assert len(zoomed[key]) == len(zoomed["labels"]), key
assert len(zoomed["labels"]) <= len(target["labels"])

# %% [markdown]
# ## COCO: the same classes, other pictures
#
# COCO has no `rider` class (a rider is a `person` on a `bicycle` or `motorcycle`) but has the
# other seven. `data_scripts/download_coco.py --dest DIR` fetches the val2017 annotations (MD5
# checked, resumable) and a subset of images that contain people or vehicles;
# `course_lib.data.coco_urban.CocoUrbanSubset(DIR)` then returns them in the format above, with COCO
# category ids mapped to course classes (`person`→1, `car`→3, ...). It is useful to test a
# Cityscapes-trained model on a different camera and city, i.e. under domain shift.
#
# ## What to remember
#
# * A detection sample is an image plus per-instance tensors that must stay aligned; `tv_tensors`
#   and `SanitizeBoundingBoxes` keep them aligned through augmentation.
# * Cityscapes encodes instances as `1000 · label + k`; plain label ids on thing classes are group
#   regions, which are ignore regions, not objects.
# * After any rotation, recompute boxes from masks.

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
# **To explore** (no check): set `angle = 10` in the rotation cell above (the training range), then
# `angle = 45`. How does the mean IoU between v2's box and the tight box change? Which classes
# suffer most, and why?

# %% [markdown]
# ```{exercise} Decode a Cityscapes instance id
# :label: exercise-label_id
#
# Write `label_id(value)`: the Cityscapes label id of one value (an integer `>= 0`) of an
# `*_instanceIds.png` map, where a value of at least `1000` is `1000 * label id + instance number`.
# Checked against cityscapesscripts' `Instance.getLabelID`.
# ```

# %%
from course_lib import exercises


def label_id(value):
    raise NotImplementedError  # your code here


exercises.check("label_id", label_id)

# %% [markdown]
# ````{solution} exercise-label_id
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/training.py
# :pyobject: label_id
# ```
# ````

# %% [markdown]
# ```{exercise} Flip a box
# :label: exercise-hflip_box
#
# Write `hflip_box(box, width)`: the `(x1, y1, x2, y2)` box, in continuous pixel-edge
# coordinates, after flipping an image `width` pixels wide left to right, still with `x1 <= x2`.
# Checked against `transforms.v2`'s `horizontal_flip` of `BoundingBoxes`.
# ```

# %%
def hflip_box(box, width):
    raise NotImplementedError  # your code here


exercises.check("hflip_box", hflip_box)

# %% [markdown]
# ````{solution} exercise-hflip_box
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/training.py
# :pyobject: hflip_box
# ```
# ````
