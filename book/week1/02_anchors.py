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
# # Anchors: the boxes the RPN starts from
#
# The Region Proposal Network never draws a box from nothing. At every position of every feature
# map it holds a few fixed reference rectangles, the **anchors**, and for each one it predicts
# (a) how likely it is to cover an object and (b) how to shift and stretch it onto that object.
# This chapter builds anchors exactly as torchvision does, with `course_lib.scratch.anchors` (tested to be
# identical to `torchvision.models.detection.anchor_utils.AnchorGenerator`), and compares two
# configurations:
#
# * the classic **9-anchor** design of Faster R-CNN: one stride-16 map, 3 sizes x 3 aspect ratios;
# * the **FPN** design that Mask R-CNN in torchvision uses: 5 maps, **one** size per map x 3 ratios,
#   so 3 anchors per position per level.

# %% tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else).
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)

# %%
# %matplotlib inline
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_convert

from course_lib import environment, exercises
from course_lib.zoo.subjects import chapter_subject
from course_lib.modeling.internals import trace
from course_lib.scratch import anchors
from course_lib.viz import stages

# %% [markdown]
# ## One position, nine anchors
#
# An anchor has a **size** $s$ and an **aspect ratio** $r$. In torchvision the size fixes the
# *area* ($s^2$) and the ratio is **height / width**, so
#
# $$ w = \frac{s}{\sqrt{r}}, \qquad h = s\sqrt{r}, \qquad w \cdot h = s^2 . $$
#
# The half-width and half-height are then rounded to whole pixels. All anchors of a position
# share its centre $(p_x \cdot \text{stride},\ p_y \cdot \text{stride})$.

# %%
sizes, ratios = (128, 256, 512), (0.5, 1.0, 2.0)
cell = anchors.cell_anchors(sizes, ratios)  # [9, 4], centred on (0, 0)
for (x1, y1, x2, y2), (r, s) in zip(cell.tolist(), [(r, s) for r in ratios for s in sizes]):
    print(f"ratio h/w {r:<3}  size {s:<3} -> w x h = {x2 - x1:>4.0f} x {y2 - y1:<4.0f}  area / size^2 = {(x2 - x1) * (y2 - y1) / s**2:.3f}")
areas = (cell[:, 2] - cell[:, 0]) * (cell[:, 3] - cell[:, 1])
assert torch.allclose(areas, torch.tensor([s**2 for _ in ratios for s in sizes], dtype=torch.float32), rtol=0.01)

# %%
position, stride = (20, 15), 16
stages.anchors_at_position(cell + torch.tensor([position[0] * stride, position[1] * stride] * 2, dtype=torch.float32),
                        image_size=(480, 640), title="the 9 anchors of position (20, 15) on a stride-16 map of a 640 x 480 image")

# %% [markdown]
# Several anchors stick out of the image. That is normal: an anchor is a hypothesis about an
# object's extent, and a position near the top can still see the lower part of a tall object.
# (At training time torchvision keeps such anchors; proposals are clipped to the image later.)
#
# ## The roadmap's worked example, and what torchvision computes
#
# The roadmap places an anchor of "scale 256, ratio 1:2" at position (20, 15) with stride 16 and
# reads the ratio as *height = 2 x width with width = scale*. That gives a 256 x 512 box, i.e.
# twice the area of a 256 x 256 one. torchvision keeps the area and splits the ratio evenly:

# %%
roadmap = anchors.roadmap_anchor_xywh(position, stride, 256, 2.0)
torchvision_box = box_convert(anchors.anchor_at(position, stride, 256, 2.0)[None], "xyxy", "xywh")[0]
print("roadmap     [x, y, w, h] =", roadmap.tolist())
print("torchvision [x, y, w, h] =", torchvision_box.tolist())
assert roadmap.tolist() == [192.0, -16.0, 256.0, 512.0]
assert torchvision_box[2] * torchvision_box[3] < roadmap[2] * roadmap[3]

# %% [markdown]
# Both boxes are centred at (320, 240) and both are "tall", but torchvision's is 182 x 362
# ($256/\sqrt 2$ and $256\sqrt 2$, rounded), with the same area as the 256 x 256 anchor. Keeping the
# area fixed means the three ratios of one size cover the same amount of image, so the size alone
# says which objects an anchor is meant for.
#
# One more rounding detail: torchvision rounds the *half* sizes to whole pixels with `torch.round`.
# The smallest FPN anchor, size 32 at ratio 0.5, has half sizes $22.63$ and $11.31$, which round to
# 23 and 11 (no half occurs, so `torch.round`'s halves-to-even rule plays no part): the anchor is
# 46 x 22, not 45.25 x 22.63:

# %%
small = anchors.cell_anchors([32], [0.5])[0]
print("size 32, ratio 0.5:", small.tolist(), "-> w x h =", (small[2:] - small[:2]).tolist())
assert (small[2:] - small[:2]).tolist() == [46.0, 22.0]

# %% [markdown]
# ## The anchor grid: 40 x 30 x 9 = 10,800
#
# Tiling the 9 anchors over a 40 x 30 map gives the roadmap's count. We let torchvision's own
# `AnchorGenerator` produce them and compare with `course_lib.scratch.anchors.grid_anchors`:

# %%
generator = AnchorGenerator((sizes,), (ratios,))
image_list = ImageList(torch.zeros(1, 3, 480, 640), [(480, 640)])
tv_anchors = generator(image_list, [torch.zeros(1, 1, 30, 40)])[0]
ours = anchors.grid_anchors(cell, (30, 40), 16)
print("anchors on a 40 x 30 map with 9 per position:", len(ours))
assert torch.equal(ours, tv_anchors)
assert len(ours) == anchors.count_anchors([(30, 40)], 9) == 10_800

# %% [markdown]
# ## Mask R-CNN with FPN: three anchors per position, on every level
#
# torchvision's `maskrcnn_resnet50_fpn` puts size 32 on the stride-4 map, 64 on stride 8, ... and
# 512 on stride 64, each with ratios (0.5, 1, 2). Small objects are matched by small anchors on
# fine maps, large ones by large anchors on coarse maps. At half of Cityscapes' native 1024 x 2048, 512 x 1024 (with
# `min_size=512, max_size=1024`, so no resize), the count is:

# %%
grid_sizes = anchors.fpn_grid_sizes((512, 1024))
per_level = [h * w * 3 for h, w in grid_sizes]
for (h, w), stride_, size, n in zip(grid_sizes, anchors.FPN_STRIDES, anchors.FPN_SIZES, per_level):
    print(f"stride {stride_:>2}: map {h:>3} x {w:<4} x 3 anchors of size {size[0]:>3} = {n:>6}")
fpn_generator = AnchorGenerator(anchors.FPN_SIZES, (anchors.FPN_ASPECT_RATIOS,) * 5)
fpn_anchors = fpn_generator(ImageList(torch.zeros(1, 3, 512, 1024), [(512, 1024)]), [torch.zeros(1, 1, h, w) for h, w in grid_sizes])[0]
print("total:", len(fpn_anchors))
print(f"{len(fpn_anchors) / 10_800:.1f} x the single-map count; {per_level[0] / sum(per_level):.0%} of them on the stride-4 level")
assert len(fpn_anchors) == sum(per_level) == anchors.count_anchors(grid_sizes, 3)

# %% [markdown]
# Many more anchors than the single-map design, most of them on the finest level: small objects
# get dense coverage. (With torchvision's default resize to 800 px the image becomes
# 672 x 1344 after padding and the count grows again.)
#
# ## The anchors of the model we inspect
#
# The chapter's model has its own anchor configuration; we read it from the model rather than
# assume it, and look at the anchors of one level over the image.

# %%
environment.seed_everything(0)
subject = chapter_subject()
environment.print_banner(subject.model_name, subject.data_name)
generator = subject.model.rpn.anchor_generator
print("sizes per level:", generator.sizes)
print("aspect ratios  :", generator.aspect_ratios[0])
print("anchors per position per level:", generator.num_anchors_per_location())
t = trace(subject.model, subject.image)
for name, level_anchors, (s, _) in zip(t.features, t.anchors, t.strides):
    print(f"level {name:>4} (stride {s:>2}): {len(level_anchors):>6} anchors")
print("total anchors:", sum(len(a) for a in t.anchors))
assert sum(len(a) for a in t.anchors) == anchors.count_anchors([f.shape[-2:] for f in t.features.values()], generator.num_anchors_per_location())

# %%
coarse = len(t.anchors) - 1
stages.anchor_grid(t.anchors[coarse], generator.num_anchors_per_location()[coarse], stages.image_in_trace_coordinates(subject.image, t), every=7)

# %% [markdown]
# Red dots: the centres of one level's positions (the corner of each stride cell). Cyan: all
# anchors of every 7th position. Each anchor is scored and refined independently; the next
# chapter turns them into proposals.

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
# ```{exercise} Compute an anchor
# :label: exercise-anchor
#
# Write `anchor(position, stride, size, aspect_ratio)` returning `(x1, y1, x2, y2)` in
# torchvision's convention: `position = (p_x, p_y)` is (column, row) on the feature map, the
# centre is `(p_x * stride, p_y * stride)`, the area is `size`$^2$ and `aspect_ratio` is height /
# width. Checked against `AnchorGenerator`, within the half pixel by which it rounds half sizes
# (rounding them yourself is optional).
# ```

# %%
import math


def anchor(position, stride, size, aspect_ratio):
    raise NotImplementedError  # your code here


exercises.check("anchor", anchor)

# %% [markdown]
# ````{solution} exercise-anchor
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/foundations.py
# :pyobject: anchor
# ```
# ````

# %% [markdown]
# ```{exercise} Anchors of an FPN
# :label: exercise-anchor_count
#
# Write `anchor_count(image_size, strides, ratios_per_size)`: the number of anchors of an FPN with
# one anchor size per level on a padded `(H, W)` batch, for the given level strides (powers of
# two) and number of aspect ratios. A level of stride `s` has one position per cell of its feature
# map, and each stride-2 step of the backbone rounds its size up. Checked against torchvision's
# `AnchorGenerator` on the feature maps that stride-2 steps give.
# ```

# %%
import math


def anchor_count(image_size, strides, ratios_per_size):
    raise NotImplementedError  # your code here


exercises.check("anchor_count", anchor_count)

# %% [markdown]
# ````{solution} exercise-anchor_count
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/foundations.py
# :pyobject: anchor_count
# ```
# ````
