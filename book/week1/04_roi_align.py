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
# # RoI Pool vs RoI Align
#
# The second stage needs a fixed-size feature for every proposal, whatever its size: 7 x 7 for
# the box head, 14 x 14 for the mask head. The proposal is a real-valued box in image pixels; the
# feature map is a grid of cells `stride` pixels apart. Two ways to bridge them:
#
# * **RoI Pool** (Fast R-CNN) rounds the box to whole cells, cuts it into whole-cell bins and
#   takes each bin's maximum. It rounds twice: the box's corners to the nearest cell (up to half
#   a cell), then each bin's edges outwards to whole cells (its start down, its end up), so a bin
#   can read features more than a whole cell (`stride` image pixels) away from where it should
#   (measured below).
# * **RoI Align** (Mask R-CNN) keeps the exact box, places a few sample points in each bin, reads
#   each point by **bilinear interpolation** of the four surrounding cells, and averages.
#
# `course_lib.scratch.roi` implements both by hand; the tests check them against `torchvision.ops`
# (identical for RoI Pool, within 1e-5 for RoI Align).

# %% tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else).
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)

# %%
# %matplotlib inline
import torch
import torchvision
from matplotlib.figure import Figure

from course_lib import environment, exercises
from course_lib.zoo.subjects import chapter_subject
from course_lib.modeling.internals import trace
from course_lib.scratch import roi
from course_lib.viz import stages

environment.seed_everything(0)
subject = chapter_subject()
environment.print_banner(subject.model_name, subject.data_name)
t = trace(subject.model, subject.image)
heads = subject.model.roi_heads
print("box head pooler :", heads.box_roi_pool)
print("mask head pooler:", heads.mask_roi_pool)

# %% [markdown]
# torchvision's Mask R-CNN uses RoI Align everywhere (`MultiScaleRoIAlign`, two samples per bin
# side, `aligned=False` for backward compatibility with the original weights). The ToyCity
# model's mask pooler runs it twice per box: 14 x 14 from the FPN levels, as torchvision does,
# and 28 x 28 from the backbone's stride-2 stem, for the thin parts (Week 2's training chapter).
#
# ## Bilinear interpolation at one point
#
# A feature cell $(i, j)$ holds the value at the point $(y, x) = (i, j)$. To read the map at a
# real-valued point, take the four cells around it, $y_0 = \lfloor y \rfloor$,
# $x_0 = \lfloor x \rfloor$, and weight each by the area of the opposite sub-rectangle
# ($l_y = y - y_0$, $l_x = x - x_0$):
#
# $$ \begin{aligned} f(y, x) = {} & (1-l_y)(1-l_x) f_{y_0 x_0} + (1-l_y)\,l_x f_{y_0, x_0+1} \\
#    & + l_y (1-l_x) f_{y_0+1, x_0} + l_y l_x f_{y_0+1, x_0+1}. \end{aligned} $$
#
# The roadmap's example point $(x, y) = (10.7, 20.3)$: RoI Pool would use cell (20, 11) only.

# %%
level = 0  # the finest level: enough cells for the example point
fmap = t.features[list(t.features)[level]][0]
y, x = min(20.3, fmap.shape[1] - 1.5), min(10.7, fmap.shape[2] - 1.5)
interpolated = roi.bilinear_sample(fmap, torch.tensor(y), torch.tensor(x))
rounded = fmap[:, round(y), round(x)]
print(f"point (x, y) = ({x}, {y}); channel 0: bilinear {interpolated[0]:.4f}, rounded cell {rounded[0]:.4f}")
# a 1 x 1-cell box around the point with one bin and one sample reads exactly the point
reference = torchvision.ops.roi_align(fmap[None], [torch.tensor([[x - 0.5, y - 0.5, x + 0.5, y + 0.5]])], 1, 1.0, 1)[:, :, 0, 0]
assert torch.allclose(interpolated, reference[0], atol=1e-5), "one sample of RoI Align is exactly this interpolation"

# %% [markdown]
# ## Where each method looks
#
# Below, one box on a stride-16 grid split into 2 x 2 bins (the real heads use 7 x 7 and 14 x 14;
# 2 x 2 keeps the picture readable). Left: the cells RoI Pool maxes over; the dashed exact box
# has been snapped outwards and the bins overlap. Right: RoI Align's bins follow the exact box,
# and each has 2 x 2 sample points.

# %%
box = torch.tensor([37.0, 21.0, 141.0, 99.0])
stages.roi_pool_vs_align(box, feature_size=(8, 11), output_size=2, spatial_scale=1 / 16, sampling_ratio=2)

# %% [markdown]
# ## Both, on the model's real features
#
# We pool the first proposals from one FPN level with our implementations and torchvision's:

# %%
stride = t.strides[level][0]
rois = t.proposals[:32]
align = roi.roi_align(t.features[list(t.features)[level]], [rois], 7, 1 / stride, 2, False)
pool = roi.roi_pool(t.features[list(t.features)[level]], [rois], 7, 1 / stride)
feature_batch = t.features[list(t.features)[level]]
align_error = (align - torchvision.ops.roi_align(feature_batch, [rois], 7, 1 / stride, 2, False)).abs().max()
print(f"RoI Align: {tuple(align.shape)}, max difference to torchvision {align_error:.2e}")
assert align_error <= 1e-5
assert torch.equal(pool, torchvision.ops.roi_pool(feature_batch, [rois], 7, 1 / stride))

# %% [markdown]
# ## The quantisation, measured
#
# Slide a box to the right one image pixel at a time, over two cells, and watch the pooled
# features. RoI Align's output changes smoothly with the shift. RoI Pool's output stays frozen and
# then jumps when the rounded box snaps to the next cell: for up to `stride` pixels of real motion,
# the features cannot tell where the box is. For a class label that hardly matters; for a 28 x 28
# mask that must line up with object edges, it does.

# %%
def pool_bin_offsets(box: torch.Tensor, output_size: int, stride: int, width: int) -> list[float]:
    """For each RoI Pool bin of ``box`` (along x): how far, in cells, its first or last cell lies
    from the exact bin's edge (a cell's value sits at its index, as in RoI Align)."""
    exact = box[[0, 2]] / stride
    edges = exact[0] + (exact[1] - exact[0]) * torch.arange(output_size + 1) / output_size
    return [max(abs(c0 - float(edges[p])), abs(c1 - 1 - float(edges[p + 1])))
            for p, (_, _, c0, c1) in enumerate(roi.pool_bins(box, output_size, 1 / stride, (1, width))[0])]


# Boxes of every position and width (8 to 1024 pixels), inside a map wide enough that no bin is clipped.
generator = torch.Generator().manual_seed(0)
map_width = 2048 // stride + 2
x1 = torch.rand(2000, generator=generator) * 1024
widths = 8 + torch.rand(2000, generator=generator) * 1016
test_boxes = torch.stack([x1, torch.zeros_like(x1), x1 + widths, torch.full_like(x1, 8.0)], 1)
offsets = torch.tensor([max(pool_bin_offsets(b, 7, stride, map_width)) for b in test_boxes])
print(f"RoI Pool, 7 bins, {len(test_boxes)} boxes: worst bin offset {offsets.max():.2f} cells ({offsets.max() * stride:.0f} px); "
      f"more than half a cell in {(offsets > 0.5).float().mean():.0%} of the boxes")
assert offsets.max() > 1, "the two roundings add up to more than the half cell of the corners: over a whole cell"

# %%
shifts = torch.arange(0, 2 * stride + 1)
base = rois[0]
change_align, change_pool = [], []
for s in shifts.tolist():
    moved = base + torch.tensor([s, 0.0, s, 0.0])
    change_align.append((roi.roi_align(feature_batch, [moved[None]], 7, 1 / stride, 2) - align[:1]).abs().mean().item())
    change_pool.append((roi.roi_pool(feature_batch, [moved[None]], 7, 1 / stride) - pool[:1]).abs().mean().item())
fig = Figure(figsize=(7, 3), layout="constrained")
ax = fig.subplots()
ax.plot(shifts, change_align, "o-", label="RoI Align")
ax.step(shifts, change_pool, where="post", label="RoI Pool")
ax.set_xlabel(f"shift of the box in image pixels (stride {stride})")
ax.set_ylabel("mean |change| of the 7x7 features")
ax.legend()
distinct_pool = len(set(round(v, 6) for v in change_pool))
distinct_align = len(set(round(v, 6) for v in change_align))
print(f"over {len(shifts)} shifts: RoI Pool gives {distinct_pool} distinct outputs, RoI Align {distinct_align}")
assert distinct_pool < distinct_align
fig

# %% [markdown]
# ## RoI Align is two small matrix products
#
# Every output of RoI Align is a weighted sum of feature cells, with weights that depend only on
# the box: the operation is *linear* in the features. The bilinear weight of a sample splits into
# a row factor times a column factor, and so does the mean over a bin's sample grid. So for one
# RoI and one channel,
#
# $$ \text{out}_c = W_y \, F_c \, W_x^\top, \qquad W_y \in \mathbb{R}^{7 \times h},\; W_x \in \mathbb{R}^{7 \times w}, $$
#
# where row $p$ of $W_y$ holds the mean interpolation weight that each feature row receives from
# the samples of bin row $p$ (each row sums to 1 inside the map). `course_lib.scratch.roi.axis_weights`
# builds these rows; below, the product reproduces torchvision's kernel for the first proposal.

# %%
box = rois[0] / stride  # feature-map coordinates
height, width = feature_batch.shape[-2:]
w_y = roi.axis_weights(box[1:2], (box[3] - box[1]).clamp(min=1)[None], 7, 2, height)[0]
w_x = roi.axis_weights(box[0:1], (box[2] - box[0]).clamp(min=1)[None], 7, 2, width)[0]
as_matmul = w_y @ feature_batch[0] @ w_x.T  # [C, 7, h] @ ... -> [C, 7, 7]
print(f"W_y {tuple(w_y.shape)} with {int((w_y > 0).sum(1).max())} non-zero cells per row at most; "
      f"W_x {tuple(w_x.shape)}")
matmul_error = (as_matmul - align[0]).abs().max().item()
print(f"W_y F W_x^T vs torchvision's roi_align: max difference {matmul_error:.1e}")
assert matmul_error <= 1e-5
assert torch.allclose(w_y.sum(1), torch.ones(7)), "inside the map, each bin's weights sum to 1"

# %% [markdown]
# Why write it this way? Training needs the gradient with respect to the features, and the
# kernel's backward adds every sample's four weighted values into the map one by one. As
# matrices, the backward is a few more matrix products, which spread over all of a CPU's cores.
# `SeparableMultiScaleRoIAlign` does this for all RoIs at once, with torchvision's level
# assignment, whenever a gradient will flow; the ToyCity model uses it. Without a gradient
# (inference) it calls the kernel: the dense products do far more arithmetic than the kernel's
# forward, which reads only the sampled cells. Time one forward + backward of the box pooler on
# this chapter's proposals, the two ways taking turns so that a busy moment of the machine slows
# both alike. Which wins depends on the machine and its thread count: the ratio below is the
# median over rounds (Week 2's training chapter times whole training steps):

# %%
from torchvision.ops import MultiScaleRoIAlign

from course_lib.utils import timing

names, sampling = heads.box_roi_pool.featmap_names, heads.box_roi_pool.sampling_ratio
poolers = {"torchvision kernel": MultiScaleRoIAlign(names, 7, sampling),
           "two matrix products": roi.SeparableMultiScaleRoIAlign(names, 7, sampling)}
trainable = {name: f.detach().requires_grad_() for name, f in t.features.items()}  # as in training
pooled = {name: pooler(trainable, [t.proposals], [t.image_size]) for name, pooler in poolers.items()}
assert (pooled["torchvision kernel"] - pooled["two matrix products"]).abs().max() <= 1e-4, "the same pooler, computed differently"


def pooler_step(pooler: torch.nn.Module) -> None:
    """One forward + backward of `pooler` over this chapter's proposals."""
    pooler(trainable, [t.proposals], [t.image_size]).sum().backward()


device = t.proposals.device
rounds = timing.interleaved({name: lambda _, pooler=pooler: pooler_step(pooler) for name, pooler in poolers.items()},
                            device, warmup=1, repeats=environment.pick(5, 15))
step_ms = {name: 1e3 * timing.summary(seconds).median for name, seconds in rounds.seconds.items()}
print(f"{len(t.proposals)} proposals, forward + backward on {device} (torch threads: {torch.get_num_threads()}), median of "
      f"{len(rounds.seconds['torchvision kernel'])} rounds: " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in step_ms.items()))
print(f"median over rounds of kernel time / matrix-product time: "
      f"{timing.paired_speedup(rounds.seconds['torchvision kernel'], rounds.seconds['two matrix products']):.2f}x")

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
# ```{exercise} One bilinear sample
# :label: exercise-bilinear
#
# Write `bilinear(feature_map, y, x)` for a 2-D `Tensor[H, W]` and a point with `0 <= y <= H - 1`,
# `0 <= x <= W - 1` (row `y`, column `x`, float). On the last row or column the missing `+1`
# neighbour is the edge itself. Checked against `torchvision.ops.roi_align` sampling that one
# point.
# ```

# %%
import math


def bilinear(feature_map, y, x):
    raise NotImplementedError  # your code here


exercises.check("bilinear", bilinear)

# %% [markdown]
# ````{solution} exercise-bilinear
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/detection.py
# :pyobject: bilinear
# ```
# ````

# %% [markdown]
# ```{exercise} The FPN level of a box
# :label: exercise-fpn_level
#
# `MultiScaleRoIAlign` reads each box from one pyramid level, chosen by the box's scale
# $\sqrt{wh}$ (equation one of the FPN paper, canonical size `224` at level `4`). Write
# `fpn_level(box)` for an `(x1, y1, x2, y2)` list, returning the level `k` of the map $P_k$:
# $\lfloor 4 + \log_2(\sqrt{wh} / 224) + 10^{-6} \rfloor$ clamped to `2`–`5`, so a box whose scale is
# exactly `224` is at level `4`. Checked against torchvision's `LevelMapper`.
# ```

# %%
import math


def fpn_level(box):
    raise NotImplementedError  # your code here


exercises.check("fpn_level", fpn_level)

# %% [markdown]
# ````{solution} exercise-fpn_level
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/detection.py
# :pyobject: fpn_level
# ```
# ````
