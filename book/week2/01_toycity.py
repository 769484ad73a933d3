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
# # ToyCity: a street with exact ground truth
#
# Real urban datasets are large, licensed, and annotated by people. People draw a polygon around
# what they *see*; they do not record how much of a car hides behind a bus, they disagree on where
# a bicycle wheel ends, and they never label the same pedestrian across a video unless paid to.
# The course needs data that runs anywhere in seconds, and for some questions (How does accuracy
# fall with occlusion? Does a tracker keep an identity through a gap?) it needs ground truth that
# no human annotation gives for free.
#
# **ToyCity** is a small procedural world that renders street scenes together with their
# *exact* ground truth. This chapter shows how it is built and what it gives:
#
# 1. the camera model that makes far objects small;
# 2. a grid of scenes with their instance masks;
# 3. **amodal** (whole) versus **visible** masks, and the occlusion fraction derived from them;
# 4. a short clip with **track ids**;
# 5. exporting to the file formats of COCO, Cityscapes and MOTS, checked by their own tools.
#
# ToyCity is a stand-in, not a substitute: the chapters use Cityscapes and COCO whenever they
# are present. Its last section lists what it does *not* model.

# %% tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else), and TrackEval without its
# dependencies: they ask for a newer numpy than Colab's, which pip would install over it.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "trackeval==1.3.0"], check=True)

# %%
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import torch

from course_lib import environment
from course_lib.classes import CLASSES
from course_lib.data.toycity import MAX_OCCLUSION, MIN_VISIBLE_AREA, clip, scene
from course_lib.data.toycity.export import write_coco
from course_lib.evaluation.mots import evaluate_mots
from course_lib.utils import timing
from course_lib.viz.overlay import class_colors, draw_masks_and_boxes

HEIGHT, WIDTH = environment.pick((256, 512), (512, 1024))
N_GRID = environment.pick(4, 8)  # scenes in the grid
N_STATS = environment.pick(40, 400)  # scenes for the statistics
N_FRAMES = environment.pick(20, 60)  # frames in the clip (10 per second)


def overlay(image: np.ndarray, masks: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Instance masks in their class colours over an image (uint8 [H, W, 3])."""
    canvas = torch.from_numpy(image).permute(2, 0, 1)
    canvas = draw_masks_and_boxes(canvas, masks.bool(), colors=class_colors(labels), alpha=0.55)
    return canvas.permute(1, 2, 0).numpy()


# %% [markdown]
# ## A camera across the street
#
# A pinhole camera stands on the sidewalk, $h$ metres above the ground, and looks horizontally
# across the road. A point on the ground at lateral position $x$ and distance $z$ lands at
#
# $$
# u = c_x + f\,\frac{x}{z}, \qquad v = v_0 + f\,\frac{h}{z},
# $$
#
# where $f$ is the focal length in pixels and $v_0$ the row of the horizon. Two consequences are
# all the "perspective" ToyCity needs: an object $H$ metres tall is $fH/z$ pixels tall, so its
# image **area falls as $1/z^2$**; and farther objects stand **higher** in the image, closer to
# the horizon. The street is a stack of depth bands (near sidewalk, lanes, far sidewalk, building
# facades); near lanes drive right, far lanes drive left; pedestrians walk along the sidewalks
# or cross on the zebra. Every scene draws its own camera ($f$, $h$, horizon), street width,
# colours, exposure and sensor noise from `numpy.random.default_rng(seed)`, so the same seed
# always gives the same scene and nothing depends on a global random state.
#
# Each object is drawn with OpenCV on its own small canvas, in metres, from parts: wheels,
# windows, heads, limbs, a bicycle's frame. The canvas keeps a colour image and a binary mask
# painted by the *same* calls without anti-aliasing, so the mask is exactly the set of pixels the
# object painted. Objects are pasted far to near; each pasted pixel also records *which* object
# is there. That single id map is what makes the ground truth exact.

# %%
images, targets = zip(*[scene(seed, HEIGHT, WIDTH) for seed in range(N_GRID)])
environment.print_banner("no model", f"ToyCity scenes 0..{N_GRID - 1}, {HEIGHT}x{WIDTH}")
fig, axes = plt.subplots(N_GRID // 2, 4, figsize=(16, 1.1 * N_GRID * HEIGHT / WIDTH * 2))
for ax, image, target in zip(axes.reshape(-1, 2), images, targets):
    ax[0].imshow(image)
    ax[1].imshow(overlay(image, target["masks"], target["labels"]))
    ax[1].set_title(f"{len(target['labels'])} instances", fontsize=9)
    for a in ax:
        a.axis("off")
fig.tight_layout()
print("classes in the grid:", sorted({CLASSES[int(l)] for t in targets for l in t["labels"]}))

# %% [markdown]
# The ground truth comes in torchvision's detection format (`boxes`, `labels`, `masks`,
# `area`, `iscrowd`, `image_id`) plus what only a renderer knows: `amodal_masks`, `occlusion` and
# `depth`. Boxes are tight to the visible mask in *pixel-edge* coordinates: $x_2$ is the last
# mask column **plus one**, so a box covers whole pixels, a one-pixel object has width 1, and the
# COCO box $[x_1, y_1, x_2-x_1, y_2-y_1]$ equals `pycocotools.mask.toBbox` of the mask.
# (`torchvision.ops.masks_to_boxes` returns the last column itself.)

# %%
target = targets[0]
for key, value in target.items():
    print(f"{key:13s}", tuple(value.shape), value.dtype)
masks = target["masks"]
assert masks.sum(0).max() <= 1, "visible masks never share a pixel"
assert not (masks.bool() & ~target["amodal_masks"].bool()).any(), "visible lies inside amodal"
rows, cols = masks.any(2), masks.any(1)
first_col = cols.float().argmax(1)
last_col = WIDTH - 1 - cols.flip(1).float().argmax(1)
assert torch.equal(target["boxes"][:, 0], first_col.float()) and torch.equal(target["boxes"][:, 2], last_col.float() + 1)

# %% [markdown]
# ## Amodal and visible masks
#
# The **amodal** mask of an object is its whole shape, as if nothing stood in front of it; the
# **visible** mask is what survives in the id map after nearer objects are pasted. Their ratio
# defines the occlusion fraction
#
# $$
# \text{occlusion} = 1 - \frac{|\text{visible}|}{|\text{amodal}|} .
# $$
#
# Both masks are clipped to the image first, so leaving the frame counts as *truncation*, not
# occlusion. An object hidden by more than `MAX_OCCLUSION` of its area, or with fewer than
# `MIN_VISIBLE_AREA` visible pixels, is dropped from the target: no annotator could label it, and
# no detector should be blamed for missing it. (Its few visible pixels stay in the image; the
# Cityscapes exporter writes them as a class region without an instance, like a Cityscapes group.)

# %%
print(f"MAX_OCCLUSION = {MAX_OCCLUSION}, MIN_VISIBLE_AREA = {MIN_VISIBLE_AREA} px")
# the most occluded object of the grid
best = max(((i, j) for i, t in enumerate(targets) for j in range(len(t["labels"]))),
           key=lambda ij: float(targets[ij[0]]["occlusion"][ij[1]]))
image, target = images[best[0]], targets[best[0]]
j = best[1]
box = target["amodal_masks"][j].nonzero()
(y0, x0), (y1, x1) = box.min(0).values.tolist(), box.max(0).values.tolist()
crop = (slice(max(y0 - 10, 0), y1 + 10), slice(max(x0 - 10, 0), x1 + 10))
environment.print_banner("no model", f"ToyCity scene {best[0]}, {HEIGHT}x{WIDTH}")
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
axes[0].imshow(image[crop])
axes[0].set_title(f"{CLASSES[int(target['labels'][j])]}, depth {float(target['depth'][j]):.1f} m")
axes[1].imshow(target["amodal_masks"][j][crop], cmap="gray")
axes[1].set_title(f"amodal: {int(target['amodal_masks'][j].sum())} px")
axes[2].imshow(target["masks"][j][crop], cmap="gray")
axes[2].set_title(f"visible: {int(target['masks'][j].sum())} px, occlusion {float(target['occlusion'][j]):.2f}")
for ax in axes:
    ax.axis("off")
visible, amodal = target["masks"][j].sum().item(), target["amodal_masks"][j].sum().item()
assert abs(float(target["occlusion"][j]) - (1 - visible / amodal)) < 1e-6

# %% [markdown]
# ## What the scenes contain, in numbers
#
# Two checks on many scenes. First, the camera model: for cars that are not cut by the image
# border, the amodal area (occlusion does not change it) obeys $\log(\text{area}) = 2\log f + \log(\text{metric size}) - 2\log z$, a slope of
# $-2$ against $\log(\text{depth})$. Every scene has its own focal length $f$, which shifts all
# of its cars up or down together, so we subtract each scene's mean before fitting (a
# "fixed effect" per scene); the cars' own sizes differ too, which scatters the points but does
# not tilt the line. Second, how much of each class is hidden: occlusion is what separates an
# easy street from a hard one.

# %%
def summary(target: dict) -> dict:
    """The per-instance numbers this section needs (a full target holds [N, H, W] masks: too big to keep 400)."""
    keys = ("labels", "occlusion", "depth", "boxes")
    return {**{k: target[k] for k in keys}, "amodal_area": target["amodal_masks"].flatten(1).sum(1).float()}


stats = [summary(scene(seed, HEIGHT, WIDTH)[1]) for seed in range(100, 100 + N_STATS)]
environment.print_banner("no model", f"ToyCity scenes 100..{99 + N_STATS}, {HEIGHT}x{WIDTH}")
car = CLASSES.index("car")
log_depth, log_area = [], []  # per scene: centred on the scene's mean
for t in stats:
    inside = (t["boxes"][:, 0] > 0) & (t["boxes"][:, 2] < WIDTH)
    keep = (t["labels"] == car) & inside
    if keep.sum() >= 2:
        d, a = t["depth"][keep].log(), t["amodal_area"][keep].log()
        log_depth += (d - d.mean()).tolist()
        log_area += (a - a.mean()).tolist()
slope = np.polyfit(log_depth, log_area, 1)[0]
print(f"{len(log_depth)} cars: log-area vs log-depth slope {slope:.2f} (pinhole camera: -2)")
assert abs(slope + 2) < 0.4

labels = torch.cat([t["labels"] for t in stats])
occlusion = torch.cat([t["occlusion"] for t in stats])
fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
axes[0].plot(log_depth, log_area, ".", alpha=0.5)
axes[0].set(xlabel="log depth - scene mean", ylabel="log area - scene mean", title=f"cars (amodal area): slope {slope:.2f}")
present = [c for c in range(1, len(CLASSES)) if (labels == c).any()]
axes[1].boxplot([occlusion[labels == c].numpy() for c in present], tick_labels=[CLASSES[c] for c in present])
axes[1].set(ylabel="occlusion", title="occlusion by class")
fig.tight_layout()
for c in present:
    print(f"{CLASSES[c]:10s} {int((labels == c).sum()):5d} instances, mean occlusion {occlusion[labels == c].mean():.2f}")

# %% [markdown]
# The knobs of `scene()` move these numbers in the direction their names promise: `occlusion` is
# the probability that a new object is placed in line with one already there, `small_share` the
# probability that it goes to the far half of the street, `num_objects` how many are placed
# before hidden ones are dropped, and `classes` which classes appear.

# %%
def mean_of(key, **options):
    return torch.cat([scene(s, HEIGHT, WIDTH, num_objects=10, **options)[1][key] for s in range(N_GRID * 2)]).mean().item()


environment.print_banner("no model", f"ToyCity scenes 0..{2 * N_GRID - 1}, 10 objects each")
low, high = mean_of("occlusion", occlusion=0.0), mean_of("occlusion", occlusion=1.0)
near, far = mean_of("area", small_share=0.0), mean_of("area", small_share=1.0)
print(f"mean occlusion: occlusion=0 -> {low:.3f}, occlusion=1 -> {high:.3f}")
print(f"mean visible area: small_share=0 -> {near:.0f} px, small_share=1 -> {far:.0f} px")
assert high > low and far < near

# %% [markdown]
# ## A clip with track ids
#
# `clip(seed, num_frames)` keeps one street and moves its actors at 10 frames per second. All
# vehicles of a lane share the lane's speed, so they queue without driving through each other;
# riders keep to the curb; pedestrians walk along the sidewalks, or cross on the zebra and walk on.
# New actors enter at the edge their lane flows from, and leave at the other. Each labelled actor
# gets a **track id** when it appears and keeps it; while it is hidden past `MAX_OCCLUSION` it is
# absent from the targets, and it comes back with the same id. That is the situation a tracker
# must survive (Week 3).

# %%
frames = clip(7, N_FRAMES, HEIGHT, WIDTH)
environment.print_banner("no model", f"ToyCity clip 7, {N_FRAMES} frames at 10 fps, {HEIGHT}x{WIDTH}")
shown = np.linspace(0, N_FRAMES - 1, 4).astype(int)
fig, axes = plt.subplots(2, 2, figsize=(14, 14 * HEIGHT / WIDTH))
for ax, t in zip(axes.flat, shown):
    image, target = frames[t]
    ax.imshow(overlay(image, target["masks"], target["labels"]))
    for box, track in zip(target["boxes"].tolist(), target["track_ids"].tolist()):
        ax.text(box[0], box[1], str(track), color="white", fontsize=8, backgroundcolor="black")
    ax.set_title(f"frame {t}")
    ax.axis("off")
fig.tight_layout()

# %% [markdown]
# The timeline below has one row per track and one column per frame; the shade is the visible
# fraction ($1 -$ occlusion). Rows that start late entered the view; rows that stop early left
# it; gaps are frames where the object was (almost) fully hidden.

# %%
tracks = sorted({i for _, t in frames for i in t["track_ids"].tolist()})
timeline = np.full((len(tracks), N_FRAMES), np.nan)
for t, (_, target) in enumerate(frames):
    for track, occ in zip(target["track_ids"].tolist(), target["occlusion"].tolist()):
        timeline[tracks.index(track), t] = 1 - occ
fig, ax = plt.subplots(figsize=(12, 0.25 * len(tracks) + 1))
shown_timeline = ax.imshow(timeline, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
fig.colorbar(shown_timeline, ax=ax, label="visible fraction")
ax.set(xlabel="frame", ylabel="track id", yticks=range(len(tracks)), yticklabels=tracks)
ax.set_title("visible fraction per track (blank: not in the frame's ground truth)")
label_of = {}
for _, target in frames:
    for track, label in zip(target["track_ids"].tolist(), target["labels"].tolist()):
        assert label_of.setdefault(track, label) == label, "a track never changes class"
first, last = set(frames[0][1]["track_ids"].tolist()), set(frames[-1][1]["track_ids"].tolist())
print(f"{len(tracks)} tracks; {len(last - first)} entered, {len(first - last)} left during the clip")

# %% [markdown]
# ## The field's file formats, checked by the field's tools
#
# A synthetic dataset is only useful if the tools built for real data accept it unchanged.
# `course_lib.data.toycity.export` writes
#
# * **COCO** instances JSON with RLE masks (`write_coco`); evaluating the ground truth as if it
#   were a perfect prediction must give AP = 1 in pycocotools;
# * the exact **Cityscapes** `leftImg8bit`/`gtFine` layout (`write_cityscapes`), which chapter 2
#   reads back with the course's Cityscapes reader;
# * **MOTS** text files (`course_lib.evaluation.mots.write_mots`), which TrackEval scores; a tracker that
#   reports the true ids gets HOTA = 1, and one that swaps two ids halfway does not.
#
# `data_scripts/make_toycity.py` exports whole splits from the command line.

# %%
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

workdir = tempfile.mkdtemp(prefix="toycity_")
coco = COCO(str(write_coco(workdir, "val", [(images[i], targets[i]) for i in range(N_GRID)])))
perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"], "score": 1.0}
           for a in coco.dataset["annotations"]]
evaluator = COCOeval(coco, coco.loadRes(perfect), "segm")
evaluator.evaluate()
evaluator.accumulate()
environment.print_banner("ground truth as prediction", f"ToyCity scenes 0..{N_GRID - 1}")
evaluator.summarize()
assert evaluator.stats[0] == 1.0

# %%
def swap_ids(frame: dict, a: int, b: int) -> dict:
    """The frame with track ids ``a`` and ``b`` exchanged."""
    ids = frame["track_ids"].clone()
    ids[frame["track_ids"] == a], ids[frame["track_ids"] == b] = b, a
    return dict(frame, track_ids=ids)


gt = [target for _, target in frames]
half = N_FRAMES // 2
labels_half = gt[half]["labels"]
pair_class = next(c for c in labels_half.unique().tolist() if (labels_half == c).sum() >= 2)
a, b = gt[half]["track_ids"][labels_half == pair_class][:2].tolist()
swapped_name = f"{CLASSES[pair_class]}s {a} and {b} swapped"
swapped = gt[:half] + [swap_ids(frame, a, b) for frame in gt[half:]]
scores = evaluate_mots(gt, {"true ids": gt, swapped_name: swapped}, workdir)
environment.print_banner("ground truth as tracker", f"ToyCity clip 7, {N_FRAMES} frames")
for name, per_class in scores.items():
    print(f"{name:28s}", {k: round(v, 3) for k, v in per_class["all"].items()})
assert scores["true ids"]["all"]["HOTA"] == 1.0
assert scores[swapped_name]["all"]["HOTA"] < 1.0

# %% [markdown]
# ## Speed
#
# Generating a scene with all of its ground truth must be cheap enough to do on the fly inside a
# data loader. Drawing each object on a canvas the size of its own box (clipped to the image),
# instead of full-image masks per part, is what keeps it so. The command
# `OMP_NUM_THREADS=1 python data_scripts/make_toycity.py --bench` measures it at 1024x512 on one
# core; here is a quick measurement at this chapter's size (on a shared machine the number moves).

# %%
# each call returns its object count, not the scene: the timed calls' outputs are kept
generation = timing.summary(timing.repeat(lambda seed: len(scene(seed, HEIGHT, WIDTH)[1]["labels"]), torch.device("cpu"),
                                          warmup=1, repeats=environment.pick(10, 50)))
environment.print_banner("no model", f"ToyCity generation, {HEIGHT}x{WIDTH}")
print(f"{1 / generation.median:.1f} scenes/s ({1000 * generation.median:.0f} ms per scene, ground truth included; "
      f"median of {generation.n} scenes, 90th percentile {1000 * generation.p90:.0f} ms)")

# %% [markdown]
# ## What ToyCity does not model
#
# * **Viewpoint.** Every object is seen from the side, by a camera looking across the street.
#   A dash camera (Cityscapes) sees most cars from behind, with the road converging to a
#   vanishing point; a model trained on ToyCity alone will not transfer to that view.
# * **Appearance.** Flat colours with a little noise, blur and a colour cast: no shadows,
#   reflections, motion blur, rain or night. A ToyCity model learns shapes, which is the point,
#   but real textures are a different problem.
# * **Masks of thin structures.** Bicycle wheels are rings with holes, as in reality; the
#   Cityscapes polygon file (outer outlines, like human annotators draw) loses those holes, while
#   the instance-id PNG keeps them.
# * **Crowds.** Objects do not gather into dense clusters, so Cityscapes-style group regions
#   come only from the exporter's `group_area` option and from dropped, nearly hidden objects.
#
# Treat ToyCity numbers as statements about ToyCity. Every result in the course says which data it
# comes from, for exactly that reason.

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
# ```{exercise} A box from a mask
# :label: exercise-box_from_mask
#
# ToyCity derives every box from its mask. Write `box_from_mask(mask)` returning the tight `(x1,
# y1, x2, y2)` box of the `True` pixels of a boolean `Tensor[H, W]` with at least one, covering
# whole pixels: a single pixel at row `y`, column `x` gives `(x, y, x + 1, y + 1)`. Checked against
# `torchvision.ops.masks_to_boxes` plus one on `x2` and `y2` (it gives the last pixel's index).
# ```

# %%
import torch

from course_lib import exercises


def box_from_mask(mask):
    raise NotImplementedError  # your code here


exercises.check("box_from_mask", box_from_mask)

# %% [markdown]
# ````{solution} exercise-box_from_mask
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/training.py
# :pyobject: box_from_mask
# ```
# ````

# %% [markdown]
# ```{exercise} How occluded is an object?
# :label: exercise-occlusion
#
# ToyCity knows each object's amodal mask (its full extent, at least one pixel) and its visible
# mask (a subset of it). Write `occlusion(amodal_mask, visible_mask)`: the fraction of the object
# that is hidden, from `0.0` (fully visible) to `1.0` (fully hidden).
# ```

# %%
def occlusion(amodal_mask, visible_mask):
    raise NotImplementedError  # your code here


exercises.check("occlusion", occlusion)

# %% [markdown]
# ````{solution} exercise-occlusion
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/training.py
# :pyobject: occlusion
# ```
# ````
