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
# # The same thing in Detectron2
#
# This course builds on torchvision's Mask R-CNN; much of the field, and many workplaces, use
# Facebook AI Research's Detectron2. The two implement the same model with different conventions,
# and Detectron2's model zoo holds trained weights, among them a Mask R-CNN fine-tuned on Cityscapes.
# `course_lib.zoo.detectron2_weights` reads those weights without installing Detectron2 (which has no
# PyPI release) and converts them into a torchvision `MaskRCNN`. This page maps the course's calls
# to Detectron2's and shows what the conversion has to get right.

# %% tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else).
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)

# %% [markdown]
# ## The course's calls and Detectron2's
#
# | Task | course_lib / torchvision | Detectron2 |
# |---|---|---|
# | a trained model | `zoo.load("detectron2:Cityscapes/mask_rcnn_R_50_FPN")` | `cfg = get_cfg()`; `cfg.merge_from_file(model_zoo.get_config_file(...))`; `cfg.MODEL.WEIGHTS = model_zoo.get_checkpoint_url(...)`; `DefaultPredictor(cfg)` |
# | input | a list of RGB float tensors `[3, H, W]` in `[0, 1]`; the model resizes as `DefaultPredictor` does (`resize="pil"`, or `resize="interpolate"` on the device) | `predictor(image)` with a BGR `uint8` array `[H, W, 3]` (it resizes), or `model([{"image": ..., "height": ..., "width": ...}])` with BGR in `[0, 255]` already resized |
# | output | per image a dict: `boxes`, `labels` (background is `0`), `scores`, `masks` (soft, `[N, 1, H, W]`) | `outputs["instances"]`: `pred_boxes`, `pred_classes` (first class is `0`), `scores`, `pred_masks` (bool, `[N, H, W]`) |
# | class names | `detectron2_weights.class_names(name)`, `course_lib.classes.CLASSES` | `MetadataCatalog.get(cfg.DATASETS.TEST[0]).thing_classes` |
# | test-time size | `MaskRCNN(min_size=..., max_size=...)` | `cfg.INPUT.MIN_SIZE_TEST`, `cfg.INPUT.MAX_SIZE_TEST` |
# | score threshold, NMS | `box_score_thresh`, `box_nms_thresh`, `box_detections_per_img` | `cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST`, `NMS_THRESH_TEST`, `cfg.TEST.DETECTIONS_PER_IMAGE` |
# | RoI Align | `torchvision.ops.roi_align(..., aligned=True)` | `detectron2.layers.ROIAlign(..., aligned=True)` (`ROIAlignV2`) |
# | Cityscapes evaluation | `cityscapes_eval.cityscapes_official_eval(...)` | `CityscapesInstanceEvaluator` (both call `cityscapesscripts`) |
# | drawing | `course_lib.viz.stages`, `torchvision.utils.draw_segmentation_masks` | `Visualizer(image, metadata).draw_instance_predictions(...)` |
# | training | `python -m course_lib train` | `DefaultTrainer(cfg).train()`, `tools/train_net.py` |

# %% [markdown]
# ## What the conversion has to get right
#
# A state dict is only half of a model: the same numbers give different outputs under different
# conventions. `course_lib.modeling.detectron2_arch` builds torchvision's Mask R-CNN with Detectron2's; the
# Cityscapes model's, untrained (no weights needed), shows them:
#
# - **input**: Detectron2 subtracts its pixel mean from BGR values in `[0, 255]`; the course feeds
#   RGB in `[0, 1]`. Reversing the first convolution's input channels and dividing mean and std by
#   the pixel range gives the same arithmetic.
# - **backbone**: the MSRA ResNet puts a stage's stride in its first `1×1` convolution,
#   torchvision's ResNet in the `3×3`.
# - **proposals**: Detectron2 ranks them by objectness logits; torchvision by their sigmoid, which
#   rounds to exactly one for confident proposals, so that non-maximum suppression breaks ties
#   arbitrarily.
# - **anchors**: Detectron2 keeps fractional anchor sizes and fixed strides per level.
# - **RoI pooling**: `ROIAlignV2` samples with the half-pixel correction (`aligned=True`), with
#   adaptive sampling, in both poolers.
# - **classes**: Detectron2's classifier puts background in its *last* column and has no
#   background box or mask rows; torchvision's puts it *first*.
# - **masks**: Detectron2 pastes each mask by sampling it at the image's pixel centres.
# - **resize**: Detectron2 resizes before the model, rounding the new size half up, and (in its
#   `DefaultPredictor`) with PIL on the `uint8` image, which averages pixels when it shrinks;
#   torchvision resizes inside the model, floors the size and interpolates floats. The converted
#   model resizes as Detectron2 does (next section).

# %%
import torch

from course_lib.modeling import detectron2_arch
from course_lib.zoo import detectron2_weights

entry = detectron2_weights.entry("Cityscapes/mask_rcnn_R_50_FPN")
converted = detectron2_arch.build(entry.depth, len(entry.classes) + 1, entry.min_size, entry.max_size)
first_block = converted.backbone.body.layer2[0]
print("test-time resize      :", converted.transform.min_size, converted.transform.max_size)
print("RGB mean, std (x255)  :", [round(255 * m, 3) for m in converted.transform.image_mean], [round(255 * s, 3) for s in converted.transform.image_std])
print("stride of 1x1 / 3x3   :", first_block.conv1.stride, first_block.conv2.stride)
print("anchor, size 32, h/w 0.5:", [round(v, 3) for v in converted.rpn.anchor_generator.cell_anchors[0][0].tolist()])
print("RoI poolers           :", type(converted.roi_heads.box_roi_pool).__name__, "sampling ratio", converted.roi_heads.box_roi_pool.sampling_ratio)
print("box regression weights:", converted.roi_heads.box_coder.weights)
print("classes               :", detectron2_weights.class_names(entry.name))
assert first_block.conv1.stride == (2, 2) and converted.transform.min_size == (entry.min_size,)

# %% [markdown]
# ## Any image size: Detectron2's resize
#
# Detectron2's `ResizeShortestEdge` scales the short side to the test size (unless the long side
# would pass its bound) and rounds each new side half up; torchvision's transform floors it. On a
# photograph whose scaled side ends in a fraction above one half, the two models see images one
# pixel apart in width, every pixel resampled at a slightly different place, and with trained or
# random weights alike that moves detections. `detectron2_arch.output_size` is Detectron2's rule;
# `resize="pil"` (the default of `zoo.load("detectron2:...")`) resamples with PIL as
# `DefaultPredictor` does, `resize="interpolate"` with `torch.nn.functional.interpolate` on the
# image's device, as Detectron2 resizes a float image.

# %%
from torchvision.models.detection.transform import GeneralizedRCNNTransform

photo_hw = (342, 548)  # Debian's messi5.jpg
floor_transform = GeneralizedRCNNTransform(entry.min_size, entry.max_size, [0.0] * 3, [1.0] * 3).eval()
torchvision_hw = tuple(floor_transform.resize(torch.zeros(3, *photo_hw))[0].shape[-2:])
detectron2_hw = detectron2_arch.output_size(*photo_hw, entry.min_size, entry.max_size)
print(f"a {photo_hw[0]}x{photo_hw[1]} photograph: exact width {photo_hw[1] * entry.min_size / photo_hw[0]:.2f}; "
      f"torchvision resizes it to {torchvision_hw}, Detectron2 (and the converted model) to {detectron2_hw}")
print("converted model's resize:", converted.transform.resize_mode, "-", detectron2_arch.RESIZE_MODES[converted.transform.resize_mode])
assert detectron2_hw[1] == torchvision_hw[1] + 1

# %% [markdown]
# ## Proof that the conversion is exact
#
# `data_scripts/detectron2_equality.py` writes one model-zoo file with random weights, loads it into
# Detectron2 itself (built from its Cityscapes config, on the CPU) and into `course_lib`, runs
# both on real photographs and a video frame at their own sizes (each needs resizing, up or
# down) and compares every detection: the default `resize="pil"` against Detectron2's
# `DefaultPredictor`, and `resize="interpolate"` against Detectron2's model fed its own float
# resize. Random weights make garbage detections, but garbage in large numbers with distinct
# scores and masks: any convention the conversion got wrong would move them. It also checks the
# size rule against Detectron2's own on a grid of sizes. The committed result:

# %%
import json
from importlib import resources

equality = json.loads((resources.files("course_lib") / "assets" / "results" / "detectron2_equality.json").read_text())
sizes = equality["output_size"]
print("command   :", equality["command"])
print("versions  :", equality["versions"])
print(f"output size: {sizes['equal']} of {sizes['sizes_checked']} sizes as Detectron2's get_output_shape "
      f"({sizes['zero_sided_refused']} too elongated ones refused, where Detectron2 would make a side of 0 pixels)")
for name in ("pil", "interpolate"):
    comparison = equality["comparisons"][name]
    print(f"\n{comparison['course_lib']} vs Detectron2 ({comparison['detectron2']}):")
    for image in comparison["images"]:
        print(f"  {image['image']:<28} {image['size_hw']} -> {image['resized_hw']}: {image['matched']}/{image['detections_detectron2']} paired, "
              f"box diff {image['max_abs_box_diff_px']:.1e} px, score diff {image['max_abs_score_diff']:.1e}, "
              f"mask pixels differing {image['mask_pixels_differing']} of {image['mask_pixels_detectron2']}")
    print("  within tolerance:", comparison["within_tolerance"], comparison["tolerance"])
    assert comparison["within_tolerance"]
assert sizes["equal"] == sizes["sizes_checked"]

# %% [markdown]
# The differences that remain are float rounding: the input normalisation is folded into a
# different order of operations, and the last digits of a score can then swap two neighbouring
# detections or let the detection cap keep a different last one, which is why detections are
# paired by their boxes rather than by rank. What `resize="interpolate"` gives up, measured against
# `DefaultPredictor` on the same images:

# %%
remains = equality["comparisons"]["interpolate_vs_default_predictor"]
print(f"{remains['course_lib']} vs Detectron2 ({remains['detectron2']}): "
      f"{remains['matched_fraction']:.0%} of detections paired, max box diff {remains['max_abs_box_diff_px']:.2f} px, "
      f"max score diff {remains['max_abs_score_diff']:.3f}, mask pixels differing {remains['mask_pixel_disagreement']:.1%}")

# %% [markdown]
# PIL's resize averages the pixels a shrinking step covers and rounds to whole intensities;
# interpolation samples four neighbours in float. Random weights make every detection sensitive to
# such pixel differences, and how far a trained model moves was not measured here: where
# Detectron2's own detections matter, keep the default.
