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

# %% [markdown] slideshow={"slide_type": "skip"}
# # Slides
#
# This notebook is also a slide deck. Each markdown cell marked as a slide in its cell metadata
# (`slideshow.slide_type`) starts a new slide; the code below it computes the slide's figure with
# `course_lib`, at the small sizes of fast mode, so the deck rebuilds in seconds. The site build
# turns the executed notebook into a reveal.js presentation without the code:
#
# ```
# python book/_ext/offline_slides.py _build/jupyter_execute/book/week4/05_slides.ipynb _build/html/slides
# ```
#
# and publishes it next to the book as `slides/index.html`. reveal.js and MathJax are copied beside
# the deck from two pinned Python packages, so it presents without an internet connection; the
# figures are inside the one HTML file. Cells marked "skip", like this one, stay out of the deck.

# %% slideshow={"slide_type": "skip"} tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else), and TrackEval and boxmot's trackers
# (with lapx, their assignment solver) without their dependencies: TrackEval's ask for a newer
# numpy than Colab's, boxmot's for its detectors' and re-id models' packages.
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "trackeval==1.3.0", "boxmot==25.0.0", "lapx==0.11.1"], check=True)

# %% slideshow={"slide_type": "skip"}
# course_lib.viz.stages returns matplotlib Figure objects; Jupyter draws them only once the inline backend is on.
# %matplotlib inline
import matplotlib.pyplot as plt
import torch

from course_lib import environment, results, zoo
from course_lib.data.toycity import clip, scene
from course_lib.tracking.track_metrics import noisy_detections, run_tracker
from course_lib.tracking.trackers import make_tracker
from course_lib.modeling.internals import trace
from course_lib.tracking.annotate import draw_instances
from course_lib.report import figures
from course_lib.viz import overlay, stages

environment.seed_everything(0)
HEIGHT, WIDTH = 256, 512

# %% [markdown] slideshow={"slide_type": "slide"}
# # Urban scene instance segmentation
# ## Mask R-CNN, taken apart, trained, made fast and tracked
#
# A four-week open course: notebooks that compute what they claim, on a library with tests,
# running offline on a CPU.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The problem: which pixels belong to which object?
#
# Boxes say *where*; instance masks say *which pixels*, per object, even when a pedestrian stands
# in front of a car. The course's model on a ToyCity street:

# %%
model = zoo.load("toycity", device="cpu")  # the deck always shows the offline model, wherever it is built
image = torch.from_numpy(scene(3, HEIGHT, WIDTH)[0]).permute(2, 0, 1).float() / 255
t = trace(model, image)
environment.print_banner("ToyCity model (course_lib.zoo.registry)", f"ToyCity scene 3 ({HEIGHT}x{WIDTH})")
assert len(t.boxes) > 0, "the model finds nothing: is the ToyCity checkpoint installed?"
overlay.detections_overlay(image, t.final, title="")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The architecture, as tensors
#
# Backbone + FPN → RPN (anchors → proposals) → RoI Align → box head (class, box) and mask head
# (one 28 × 28 mask per class). Shapes of one image through the model:

# %%
for name, feature in t.features.items():
    print(f"FPN level {name:>4}: {tuple(feature.shape)}")
print(f"anchors: {sum(len(a) for a in t.anchors)}   proposals after NMS: {len(t.proposals)}")
print(f"class scores: {tuple(t.class_probs.shape)}   detections: {len(t.boxes)}   mask logits: {tuple(t.mask_logits.shape)}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Anchors and the RPN
#
# One anchor size per FPN level, three aspect ratios, at every position. The RPN scores and shifts
# all of them; NMS keeps the best of each overlapping group as proposals.

# %%
stages.proposals_before_after_nms(stages.image_in_trace_coordinates(image, t), (t.pre_nms_boxes, t.pre_nms_scores), (t.proposals, t.proposal_scores), max_boxes=60)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Heads and class-specific masks
#
# The mask head predicts a mask for **every** class for each detection; inference keeps the
# channel of the predicted class (red), training the channel of the ground-truth class.

# %%
stages.class_masks(t.mask_logits[0], int(t.labels[0]))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## ToyCity: a street with exact ground truth
#
# A procedural world rendered far to near, so every object's visible *and* full (amodal) mask is
# known, and occlusion is a measured fraction, not a guess.

# %%
street, target = scene(11, HEIGHT, WIDTH, occlusion=1.0)
most_hidden = int(target["occlusion"].argmax())
amodal = target["amodal_masks"][most_hidden]
rows, cols = amodal.nonzero(as_tuple=True)
window = (slice(max(int(rows.min()) - 8, 0), int(rows.max()) + 9), slice(max(int(cols.min()) - 8, 0), int(cols.max()) + 9))
fig, axes = plt.subplots(1, 3, figsize=(13, 2.8), layout="constrained", width_ratios=(2, 1, 1))
axes[0].imshow(street)
axes[0].add_patch(plt.Rectangle((window[1].start, window[0].start), window[1].stop - window[1].start,
                                window[0].stop - window[0].start, fill=False, color="red"))
axes[1].imshow(target["masks"][most_hidden][window], cmap="gray")
axes[2].imshow(amodal[window], cmap="gray")
for ax, title in zip(axes, ("scene", "visible mask", "amodal (full) mask")):
    ax.set_title(title)
    ax.axis("off")
fig.suptitle(f"the most hidden object (red frame): {float(target['occlusion'][most_hidden]):.0%} occluded, exactly")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Training on a CPU
#
# The small ToyCity model, trained by `data_scripts/train_toycity.py`: held-out mask AP against
# training time (read from the committed results file).

# %%
training = results.load_results("toycity_training.json")
curve = training["curve"]
print(environment.banner("toycity_small (training run)", training["training"]["val_scenes"], training["training"], "toycity_training.json"))
fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
ax.plot([r["train_wall_s"] / 60 for r in curve], [100 * r["segm_AP"] for r in curve], "o-", label="mask AP")
ax.plot([r["train_wall_s"] / 60 for r in curve], [100 * r["segm_AP50"] for r in curve], "o-", label="mask AP50")
ax.set_xlabel("training time (minutes, CPU)")
ax.set_ylabel("held-out ToyCity AP (%)")
ax.legend()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Speed against accuracy
#
# Week 3's variants (fewer proposals, smaller input, INT8, ...) on the CPU, each timed and
# evaluated on the same held-out scenes; the orange line joins the ones nothing else beats.

# %%
figures.pareto(results.load_results("bench_cpu.json"))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Tracking instances over time
#
# Detections of consecutive frames are matched (Hungarian assignment on mask IoU with a motion
# prediction), ids carry over, and masks are smoothed. One colour per track id. **The input here is
# ToyCity's ground truth, perturbed** (jittered boxes, ragged mask edges), not a model's
# detections: the slide shows the tracker alone.

# %%
frames = clip(6, 24, HEIGHT, WIDTH, fps=25)
tracked = run_tracker(make_tracker("course"), noisy_detections([target for _, target in frames], seed=0), HEIGHT, WIDTH)
overhead = results.load_results("tracker_cpu.json")
fig, axes = plt.subplots(1, 3, figsize=(13, 2.6), layout="constrained")
for ax, k in zip(axes, (0, 11, 23)):
    ax.imshow(draw_instances(frames[k][0], tracked[k]))
    ax.set_title(f"frame {k}")
    ax.axis("off")
fig.suptitle("input: perturbed ToyCity ground truth, not model detections | "
             f"tracker update: {overhead['update_ms']:.1f} ms per frame at {overhead['instances_per_frame']:.0f} instances "
             f"({overhead['device']}, committed)")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Lessons
#
# * Read the code, not the diagram: anchors are per FPN level, masks are per class, NMS happens twice.
# * Exact synthetic ground truth (ToyCity) makes every claim testable, offline, in seconds.
# * Label every number with its model, data and device; a ToyCity number is not a Cityscapes number.
# * Speed is a property of a model *and* a machine: measure the variants, keep the Pareto front.
# * "YOLO struggles with overlaps" was about one object per grid cell; measure the assignment.
