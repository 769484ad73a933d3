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
# | input | a list of RGB float tensors `[3, H, W]` in `[0, 1]`; the model resizes | `predictor(image)` with a BGR `uint8` array `[H, W, 3]` (it resizes), or `model([{"image": ..., "height": ..., "width": ...}])` with BGR in `[0, 255]` already resized |
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

# %%
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
# ## Proof that the conversion is exact
#
# `data_scripts/detectron2_equality.py` writes one model-zoo file with random weights, loads it into
# Detectron2 itself (built from its Cityscapes config, on the CPU) and into `course_lib`, runs
# both on the same real photographs and compares every detection. Random weights make garbage
# detections, but garbage in large numbers with distinct scores and masks: any convention the
# conversion got wrong would move them. The committed result:

# %%
import json
from importlib import resources

equality = json.loads((resources.files("course_lib") / "assets" / "results" / "detectron2_equality.json").read_text())
print("command   :", equality["command"])
print("versions  :", equality["versions"])
for image in equality["images"]:
    print(f"{image['image']:<16} {image['size_hw']}: {image['matched']}/{image['detections_detectron2']} detections paired, "
          f"max box diff {image['max_abs_box_diff_px']:.1e} px, max score diff {image['max_abs_score_diff']:.1e}, "
          f"mask pixels differing {image['mask_pixels_differing']} of {image['mask_pixels_detectron2']} "
          f"(soft mask within {image['max_threshold_distance_of_differing_pixels']:.0e} of the threshold there)")
print("tolerance :", equality["tolerance"])
assert equality["within_tolerance"]

# %% [markdown]
# The differences that remain are float rounding: the input normalisation is folded into a
# different order of operations, and the last digits of a score can then swap two neighbouring
# detections or let the detection cap keep a different last one, which is why detections are
# paired by their boxes rather than by rank. One difference is left out on purpose: Detectron2
# resizes images in its data loader with PIL, torchvision inside the model with
# `torch.nn.functional.interpolate`. The proof feeds images already at the test size, so that
# neither resizes; on other sizes the two see slightly different pixels.
