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
# # Feature maps, stride and receptive fields
#
# Everything Mask R-CNN decides later (where objects might be, what they are, which pixels belong
# to them) is read off a handful of **feature maps**. This chapter opens the backbone and the
# Feature Pyramid Network (FPN) of a real Mask R-CNN and measures three things:
#
# * the **shape** of each map: in PyTorch a batch of feature maps is `[N, C, h, w]`, channels
#   first (the roadmap writes `[H, W, C]`, the TensorFlow order: same data, other layout);
# * the **stride** of each map: how many image pixels one step on the map covers;
# * the **receptive field** of one map position: which image pixels can change its value. It is
#   much larger than the stride cell, which is why a position can propose a box many times larger
#   than its cell.
#
# We use `course_lib.modeling.internals.trace`, which runs the model one submodule at a time and keeps every
# intermediate tensor; a unit test checks that its output equals `model([image])` exactly.

# %% tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else).
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)

# %%
# %matplotlib inline
import math

import torch

from course_lib import environment
from course_lib.zoo.subjects import chapter_subject
from course_lib.modeling.internals import gradient_receptive_field, trace
from course_lib.scratch.anchors import fpn_grid_sizes
from course_lib.viz import stages

environment.seed_everything(0)
subject = chapter_subject()
print("model:", subject.model_name)
print("image:", subject.data_name, tuple(subject.image.shape))

# %% [markdown]
# With COCO weights (Colab, internet) this is torchvision's COCO-pretrained Mask R-CNN on a real
# street photo; offline it is the small **ToyCity** model that ships with the course, on a
# synthetic street scene. The code is the same for both; the printed line above says which one
# you are looking at.

# %%
environment.print_banner(subject.model_name, subject.data_name)
t = trace(subject.model, subject.image)
print(f"input image {t.original_size} -> resized {t.image_size} -> padded batch {tuple(t.batch.shape)}")
for (name, fmap), (stride_y, stride_x) in zip(t.features.items(), t.strides):
    print(f"level {name:>4}: {tuple(fmap.shape)}  stride {stride_y} x {stride_x}")

# %% [markdown]
# The transform first resizes the image (shorter side to `min_size`, longer side at most
# `max_size`) and pads the batch to a multiple of 32. The stride of a level is then simply
# $\text{stride} = \text{padded size} / \text{map size}$: ResNet's stem (a strided convolution,
# then a strided max pool) divides the resolution by four, `layer1` keeps it, each later stage
# halves it (rounding up), and FPN's extra `pool` level halves it once more.
# `course_lib.scratch.anchors.fpn_grid_sizes` predicts the map sizes from the padded size alone. (When the
# last level's size is odd, torchvision's anchor generator uses the integer division
# `padded // map`, e.g. 672 // 11 = 61 instead of 64; the cell prints it if that happens here.)

# %%
padded = tuple(t.batch.shape[-2:])
nominal = [2 ** (k + 2) for k in range(len(t.features))]  # P2 has stride 4, each level doubles it
predicted = fpn_grid_sizes(padded, nominal)
measured = [tuple(f.shape[-2:]) for f in t.features.values()]
print("predicted", predicted)
print("measured ", measured)
assert predicted == measured
for name, stride, (stride_y, stride_x) in zip(t.features, nominal, t.strides):
    if (stride_y, stride_x) != (stride, stride):
        print(f"level {name}: the anchors use stride {stride_y} x {stride_x} = padded size // map size, not {stride}")

# %% [markdown]
# ## What the channels look like
#
# Each level has the same number of channels (FPN projects every stage to a common width so that
# one RPN head and one box head can read all levels). Below: the first four channels of every
# level. Fine levels keep the layout of the street; coarse levels respond to whole objects.
# Channels are *learned* filters, not designed detectors: nobody told channel 0 what to look for,
# and a randomly initialised network has the same shapes with meaningless values.

# %%
stages.feature_channels(t.features, channels=(0, 1, 2, 3))

# %% [markdown]
# ## Stride: which image point a map position stands for
#
# The roadmap's example: a 640-pixel-wide image and a 40-wide map give stride $640 / 40 = 16$, and
# position $(p_x, p_y) = (20, 15)$ stands for image point $(20 \cdot 16, 15 \cdot 16) = (320, 240)$.
# torchvision uses exactly this point, the **top-left corner** of the 16 x 16 cell, as the centre
# of that position's anchors (not the cell's middle, which would be $(328, 248)$). We check it on
# the level with stride 16 of our model:

# %%
level16 = [s for s, _ in t.strides].index(16)
name16 = list(t.features)[level16]
h16, w16 = t.features[name16].shape[-2:]
position = (min(20, w16 - 1), min(15, h16 - 1))
anchors16 = t.anchors[level16].view(h16, w16, -1, 4)[position[1], position[0]]
centres = (anchors16[:, :2] + anchors16[:, 2:]) / 2
print(f"level {name16}, position {position}: anchor centres {centres.unique(dim=0).tolist()}")
assert torch.equal(centres, torch.tensor([[position[0] * 16.0, position[1] * 16.0]]).expand_as(centres))

# %% [markdown]
# ## Receptive field: what one position actually sees
#
# A common picture says "position (20, 15) summarises the 16 x 16 pixels of its cell". The stride
# says where the position sits, not what it sees. We measure what it sees directly: take the
# gradient of that position's feature vector with respect to the input pixels. A pixel with a zero
# gradient cannot influence the position; the non-zero region is the **theoretical receptive
# field**, and where the gradient mass concentrates is the **effective receptive field**.

# %%
def receptive_field_stats(level_index: int, position: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
    """Gradient map of one position, the width of its non-zero support and of its 90%-mass box."""
    level = list(t.features)[level_index]
    grad = gradient_receptive_field(subject.model.backbone, t.batch, level, position)
    cols = grad.sum(0)
    support = cols.nonzero().flatten()
    # the narrowest centred window holding 90% of the gradient mass, in pixels
    centre = position[0] * t.strides[level_index][1]
    mass = cols / cols.sum()
    width = next(r for r in range(1, len(cols)) if mass[max(0, centre - r) : centre + r].sum() >= 0.9) * 2
    return grad, int(support.max() - support.min() + 1), width


supports = []
for k, (stride, _) in enumerate(t.strides[:-1]):
    h, w = t.features[list(t.features)[k]].shape[-2:]
    _, theoretical, effective = receptive_field_stats(k, (w // 2, h // 2))
    supports.append(theoretical)
    print(f"stride {stride:>2}: the centre position is influenced by {theoretical} px "
          f"(90% of the gradient within {effective} px) of a {padded[1]} px-wide image")
    assert theoretical > stride, "a position sees far more than its own stride cell"
print(f"finest level: {supports[0] / padded[1]:.0%} of the image's width; coarsest: {supports[-1] / padded[1]:.0%}")
assert supports[0] >= 0.8 * supports[-1], "the top-down path gives the finest level the coarsest level's reach"

# %% [markdown]
# The support of the gradient is many times wider than the stride, and the finest level reaches
# about as far as the coarsest: FPN's top-down path adds the coarsest map into every finer one.
# What share of the image that is depends on the network and on the image size (the last line
# above): the small ToyCity model at its small input size sees most of the scene from any level,
# while ResNet-50 on a photograph resized to its full test size sees only a part of it. The 90%
# window says how far the *strong* influence reaches. Either way, a position can predict an
# anchor much larger than its cell (chapter 2 gives each FPN level its anchor size) because it
# *sees* enough of the object to judge it, even though it *stands for* a single point. Here is
# the gradient of the stride-16 position from above (square-rooted for contrast), over the resized
# image with its stride grid:

# %%
grad16, _, _ = receptive_field_stats(level16, position)
stages.stride_grid(stages.image_in_trace_coordinates(subject.image, t), 16, position, grad16[: t.image_size[0], : t.image_size[1]].sqrt())

# %% [markdown]
# ## Why a pyramid
#
# A small, distant pedestrian may cover 20 x 40 pixels: on a stride-32 map that is one position,
# too coarse to place a mask. A bus may cover 400 pixels: a stride-4 position sees only part of
# it. FPN keeps one map per stride and adds the coarse maps' semantics into the fine ones (a
# top-down path with lateral connections), so every level is both detailed and meaningful. The
# RPN runs on **every** level with anchors sized for it, and the RoI heads later read each box from
# the level that matches its size:
# $k = \lfloor 4 + \log_2(\sqrt{wh} / 224) \rfloor$, clamped to the available levels.

# %%
from torchvision.ops.poolers import LevelMapper

box_pool = subject.model.roi_heads.box_roi_pool
pooled_levels = [k for k, name in enumerate(t.features) if name in box_pool.featmap_names]
# the pooler's levels by the base-2 log of their stride (P2 -> 2, ...), as torchvision infers them
scales = [2.0 ** -round(math.log2(t.strides[k][0])) for k in pooled_levels]
level_of = LevelMapper(round(-math.log2(scales[0])), round(-math.log2(scales[-1])), box_pool.canonical_scale, box_pool.canonical_level)
sizes = torch.tensor([16.0, 32, 64, 112, 224, 448])
levels = level_of([torch.stack([torch.zeros_like(sizes), torch.zeros_like(sizes), sizes, sizes], dim=1)])
for size, level in zip(sizes.tolist(), levels.tolist()):
    k = pooled_levels[level]
    print(f"a {int(size):>3} x {int(size):<3} box is pooled from level {list(t.features)[k]} (stride {t.strides[k][0]})")
k_min = int(-math.log2(scales[0]))
formula = [min(max(math.floor(box_pool.canonical_level + math.log2(s / box_pool.canonical_scale) + 1e-6), k_min), k_min + len(scales) - 1) - k_min
           for s in sizes.tolist()]
assert levels.tolist() == formula, "torchvision's level for each box is the formula above, clamped"

# %% [markdown]
# **Takeaways.** A feature map is a `[C, h, w]` tensor of learned responses; its stride maps a
# position to one image point (the anchor centre); its receptive field is far larger than the
# stride cell; FPN gives one such map per scale, and each box is read from the scale that fits it.

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
# ```{exercise} Output size of a convolution
# :label: exercise-conv_output_size
#
# Write `conv_output_size(size, kernel, stride, padding)`: the length of a convolution's output
# along one axis of length `size` (all four are positive integers, `padding >= 0`, zero padding on
# both sides, no dilation, and the kernel fits the padded input). The ResNet stem (`kernel=7,
# stride=2, padding=3`) is one of the cases. Checked against the output length of
# `torch.nn.functional.conv1d`.
# ```

# %%
from course_lib import exercises


def conv_output_size(size, kernel, stride, padding):
    raise NotImplementedError  # your code here


exercises.check("conv_output_size", conv_output_size)

# %% [markdown]
# ````{solution} exercise-conv_output_size
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/foundations.py
# :pyobject: conv_output_size
# ```
# ````

# %% [markdown]
# ```{exercise} Receptive field of a conv stack
# :label: exercise-receptive_field
#
# Write `receptive_field(layers)` for a list of `(kernel, stride)` convolutions applied in order:
# how many input pixels (along one axis) lie between the first and the last one that can change one
# output position, both included? An empty list is the identity: `1`. The check measures the
# answer with gradients through an all-ones convolution stack, as this chapter did for the whole
# backbone.
# ```

# %%
def receptive_field(layers):
    raise NotImplementedError  # your code here


exercises.check("receptive_field", receptive_field)

# %% [markdown]
# ````{solution} exercise-receptive_field
# :class: dropdown
#
# ```{literalinclude} /course_lib/exercises/foundations.py
# :pyobject: receptive_field
# ```
# ````
