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
# # Baseline metrics
#
# Before changing anything — training in Week 2, speed-ups in Week 3 — we need the number every
# change will be compared against. Instance segmentation is scored with **average precision**
# (AP), computed by pycocotools the way the COCO benchmark does it:
#
# 1. sort all detections of a class by score;
# 2. walk down the list: a detection is a true positive if its IoU with a not-yet-matched
#    ground-truth object of the same class is at least $t$, otherwise a false positive;
# 3. AP at threshold $t$ is the area under the resulting precision–recall curve (interpolated at
#    101 recall points); **AP** averages it over $t \in \{0.50, 0.55, \dots, 0.95\}$ and over the
#    classes, **AP50** uses $t = 0.5$ only.
#
# The same procedure scores boxes (`bbox`, IoU of boxes) and masks (`segm`, IoU of pixel sets).
# A mask IoU of 0.75 is much harder to reach than a box IoU of 0.75, which is why mask AP sits
# below box AP for every model in this course.
#
# **Which baseline?** With COCO weights and Cityscapes on disk, the baseline is the
# COCO-pretrained model, its heads mapped to the urban classes, on Cityscapes val, scored by the
# official Cityscapes evaluator. Offline it is the shipped ToyCity model on held-out ToyCity
# scenes, scored by pycocotools. The two are never mixed in one table.

# %% tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else).
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)

# %%
import math

import torch

from course_lib import environment, zoo
from course_lib.data import toycity
from course_lib.evaluation import inference
from course_lib.evaluation import coco_eval
from course_lib.modeling import maskrcnn as model_lib

environment.seed_everything(0)
use_cityscapes = zoo.available("coco") and environment.cityscapes_root() is not None
print("baseline:", "COCO model on Cityscapes val" if use_cityscapes else "ToyCity model on held-out ToyCity scenes")

# %% [markdown]
# ## The ToyCity baseline
#
# The held-out split is the one the training script evaluated on (scene seeds from 1,000,000 on,
# never seen in training), at the model's working size. Fast mode scores its first few scenes; the
# full run scores all of them and must reproduce the number stored in the checkpoint's manifest.

# %%
manifest = zoo.toycity_manifest()
size = manifest["build_kwargs"]["min_size"], manifest["build_kwargs"]["max_size"]
val_scenes = environment.pick(12, 100)
held_out = toycity.held_out(val_scenes, *size)

toycity_model = zoo.load("toycity", device="cpu")
environment.print_banner("ToyCity model (shipped)", f"ToyCity held-out, {val_scenes} scenes, {size[0]}x{size[1]}")
metrics, predictions = inference.evaluate_model(toycity_model, held_out, device="cpu", batch_size=4)
print(coco_eval.format_metrics(metrics))
print(f"mean mask IoU of matched pairs: {metrics['mask_iou']:.3f}")

# %%
for iou_type in ("bbox", "segm"):
    m = metrics[iou_type]
    # precision can only fall as the IoU threshold rises, so AP50 bounds both AP75 and the average
    assert 0 <= m["AP75"] <= m["AP50"] <= 1 and m["AP"] <= m["AP50"], m
assert metrics["segm"]["AP"] < metrics["bbox"]["AP"], "masks are harder to get right than boxes"
if val_scenes == 100:  # the full run re-scores exactly the manifest's split
    stored = manifest["metrics"]["segm_AP"]
    assert math.isclose(metrics["segm"]["AP"], stored, abs_tol=0.01), (metrics["segm"]["AP"], stored)
    print(f"reproduces the manifest's held-out mask AP {stored:.3f}")

# %% [markdown]
# ## Against what? An untrained model of the same shape
#
# A metric means little without a floor. The same architecture with random weights (the heads'
# default initialisation) is scored on the same scenes: whatever the trained model gains over it
# was learned from ToyCity.

# %%
untrained = model_lib.build(manifest["arch"], **manifest["build_kwargs"]).eval()
untrained_metrics, _ = inference.evaluate_model(untrained, held_out, device="cpu", batch_size=4)
environment.print_banner("untrained toycity_small (random weights)", f"ToyCity held-out, {val_scenes} scenes")
print(f"mask AP50: untrained {untrained_metrics['segm']['AP50']:.3f}  vs trained {metrics['segm']['AP50']:.3f}")
assert metrics["segm"]["AP50"] > untrained_metrics["segm"]["AP50"] + 0.2

# %% [markdown]
# ## Per class
#
# The per-class table is where a single AP hides most: classes with few or thin instances
# (bicycles are mostly wheels and a frame; riders overlap their bicycle) score far below cars and
# buses. Week 2's failure analysis looks at *why*.

# %%
print(f"{'class':12s} {'mask AP':>8s} {'mask AP50':>10s} {'box AP':>8s} {'#gt':>5s}")
for name, row in metrics["segm"]["per_class"].items():
    box_row = metrics["bbox"]["per_class"][name]
    print(f"{name:12s} {row['AP']:8.3f} {row['AP50']:10.3f} {box_row['AP']:8.3f} {row['n_gt']:5d}")
with_objects = [row for row in metrics["segm"]["per_class"].values() if row["n_gt"] > 0]
assert with_objects and all(0 <= row["AP"] <= 1 for row in with_objects if not math.isnan(row["AP"]))

# %% [markdown]
# ## The Cityscapes baseline (COCO weights + Cityscapes)
#
# This cell runs only where both exist (e.g. on Colab with your Cityscapes copy in
# `CITYSCAPES_DATASET`). It reads torchvision's COCO model in the urban classes with COCO's own
# scores (`course_lib.modeling.coco_heads.coco_zero_shot`). COCO has no rider class: it calls a rider a person,
# so here every rider is missed and every rider found counts as a person false positive, until
# fine-tuning learns the difference. It scores all 500 val images with the official
# evaluator (`cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling`). For reference, the
# Mask R-CNN paper reports 36.4 mask AP on val after *fine-tuning* on Cityscapes from COCO; the
# un-fine-tuned mapping here is the starting point of that fine-tuning.

# %%
from course_lib.evaluation.cityscapes_eval import evaluate_cityscapes, format_official


def cityscapes_val_baseline(model, name: str, out_dir: str) -> dict:
    """Score ``model`` on Cityscapes val with the official evaluator, print the table and check its range."""
    official = evaluate_cityscapes(model, out_dir)
    environment.print_banner(name, "Cityscapes val (official evaluator)")
    print(format_official(official))
    assert 0 <= official["AP"] <= official["AP50"] <= 1
    return official


if use_cityscapes:
    coco_urban = zoo.load("coco", urban=True, **environment.pick({}, dict(min_size=1024, max_size=2048)))
    cityscapes_val_baseline(coco_urban, "COCO-pretrained R50-FPN mapped to urban classes", "cityscapes_results")
else:
    print("skipped: needs COCO weights (internet) and Cityscapes (CITYSCAPES_DATASET); the ToyCity baseline above stands alone")

# %% [markdown]
# ### Detectron2's Cityscapes model on the same split
#
# Detectron2's model zoo has a Mask R-CNN R50-FPN *fine-tuned* on Cityscapes: the urban baseline
# itself, not its starting point. `zoo.load("detectron2:Cityscapes/mask_rcnn_R_50_FPN")` converts it
# to torchvision (the appendix *The same thing in Detectron2* checks that its outputs equal
# Detectron2's); its classes are the course's, in the course's order, so its predictions go to the
# same official evaluator. Detectron2's `MODEL_ZOO.md` reports its mask AP on val; this cell
# measures yours. It runs only where Cityscapes is on disk and the weights can be had.

# %%
from course_lib.zoo import detectron2_weights

D2_CITYSCAPES = "Cityscapes/mask_rcnn_R_50_FPN"
if environment.cityscapes_root() is not None and detectron2_weights.status(D2_CITYSCAPES) != "unavailable":
    cityscapes_val_baseline(zoo.load(f"detectron2:{D2_CITYSCAPES}"), "Detectron2's Cityscapes R50-FPN, converted to torchvision",
                            "cityscapes_results_detectron2")
else:
    print("skipped: needs Cityscapes (CITYSCAPES_DATASET) and Detectron2's Cityscapes weights (internet)")

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
# ```{exercise} Mask IoU
# :label: exercise-mask_iou
#
# AP counts a detection as found when its mask overlaps a ground-truth mask enough. Write
# `mask_iou(mask_a, mask_b)` for two boolean `Tensor[H, W]` masks, returning a float; two empty
# masks give `0.0`. Checked against pycocotools' mask IoU.
# ```

# %%
from course_lib import exercises


def mask_iou(mask_a, mask_b):
    raise NotImplementedError  # your code here


exercises.check("mask_iou", mask_iou)

# %% [markdown]
# ````{solution} exercise-mask_iou
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/heads.py
# :pyobject: mask_iou
# ```
# ````

# %% [markdown]
# ```{exercise} Mean AP over classes
# :label: exercise-mean_ap
#
# The headline AP is a mean over classes. Write `mean_ap(per_class_ap)` for a dict class → AP in
# which `nan` marks a class with no ground-truth instance in the evaluation set: the mean over the
# other classes (an AP of `0` counts), `nan` when no class has ground truth. Checked against
# `np.nanmean`.
# ```

# %%
import math


def mean_ap(per_class_ap):
    raise NotImplementedError  # your code here


exercises.check("mean_ap", mean_ap)

# %% [markdown]
# ````{solution} exercise-mean_ap
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/heads.py
# :pyobject: mean_ap
# ```
# ````
