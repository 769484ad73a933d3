"""Build Mask R-CNN models for the course's nine classes, and move COCO knowledge into them.

Three architectures share one entry point, :func:`build`:

* ``"maskrcnn_resnet50_fpn"`` and ``"maskrcnn_resnet50_fpn_v2"``: torchvision's models, the ones
  to fine-tune on Cityscapes on a GPU, optionally starting from COCO weights.
* ``"toycity_small"``: a CPU-sized Mask R-CNN (ResNet-18 cut after ``layer3``, GroupNorm, a
  128-channel FPN, small heads, anchors sized for ToyCity objects, a mask head that also reads
  the stride-2 stem) that trains from scratch in minutes. ``course_lib.zoo.load('toycity')``
  builds this one and loads the committed weights.

A COCO model predicts 91 category slots, the course 9 classes: with COCO weights and nine classes,
:func:`build` transfers COCO's heads to the course's classes (:mod:`course_lib.modeling.coco_heads`).
"""

from __future__ import annotations

import copy
import urllib.error
from collections import OrderedDict
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.detection import (
    MaskRCNN,
    maskrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn_v2,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from course_lib.classes import NUM_CLASSES
from course_lib.errors import WeightsUnavailable
from course_lib.modeling.coco_heads import COCO_NUM_SLOTS, replace_heads, transfer_coco_heads
from course_lib.modeling.mask_loss import MaskLossRoIHeads
from course_lib.modeling.mask_skip import STEM, BackboneWithStem, FPNLevelsRPN, StemSkipMaskHead, StemSkipMaskPooler
from course_lib.modeling.paste import transform_with_paste
from course_lib.scratch.roi import SeparableMultiScaleRoIAlign

_TORCHVISION_BUILDERS: dict[str, Callable[..., MaskRCNN]] = {
    "maskrcnn_resnet50_fpn": maskrcnn_resnet50_fpn,
    "maskrcnn_resnet50_fpn_v2": maskrcnn_resnet50_fpn_v2,
}
ARCHS = tuple(_TORCHVISION_BUILDERS) + ("toycity_small",)
#: Short names accepted by :func:`build` (and the CLI's ``--arch``).
ARCH_ALIASES = {"r50_fpn": "maskrcnn_resnet50_fpn", "r50_fpn_v2": "maskrcnn_resnet50_fpn_v2"}

#: Default resize bounds per architecture. The R50 models keep torchvision's COCO sizing; the
#: small model works at ToyCity's native 128x256 (the transform would otherwise upscale to 800 px).
DEFAULT_SIZES = {
    "maskrcnn_resnet50_fpn": (800, 1333),
    "maskrcnn_resnet50_fpn_v2": (800, 1333),
    "toycity_small": (128, 256),
}


def build(
    arch: str,
    num_classes: int = NUM_CLASSES,
    *,
    weights: str | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    mask_targets: str = "soft",
    mask_dice_weight: float = 0.0,
    paste: str | None = None,
    **kw: Any,
) -> MaskRCNN:
    """Build a Mask R-CNN in training mode.

    Args:
        arch: one of :data:`ARCHS` or a short name from :data:`ARCH_ALIASES`.
        num_classes: classes including background (9 for the course, 91 for a COCO model).
        weights: torchvision weights for the R50 models (``"DEFAULT"`` or a weights enum name, e.g.
            ``"COCO_V1"``; downloads once). With ``num_classes=9`` the COCO heads are transferred
            to the course classes (:func:`transfer_coco_heads`); with 91 the COCO model is returned.
        min_size, max_size: bounds of ``GeneralizedRCNNTransform``'s resize (see DEFAULT_SIZES).
        mask_targets, mask_dice_weight: the mask head's training targets, torchvision's ``"soft"`` or the
            paper's ``"binary"``, and the factor on a dice term added to its loss
            (:mod:`course_lib.modeling.mask_loss`); ``"soft"`` and 0 keep torchvision's ``RoIHeads``.
        paste: how predicted masks are pasted into the image, ``"course_lib"`` (exact) or
            ``"torchvision"`` (rounds boxes to whole pixels; :mod:`course_lib.modeling.paste`).
            Default: ``"course_lib"`` for ``toycity_small``, whose objects are a few pixels wide,
            torchvision's own for the R50 models.
        **kw: passed on to torchvision's ``MaskRCNN`` (e.g. ``box_detections_per_img``).
    """
    arch = ARCH_ALIASES.get(arch, arch)
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS + tuple(ARCH_ALIASES))}")
    default_min, default_max = DEFAULT_SIZES[arch]
    sizes = dict(min_size=min_size or default_min, max_size=max_size or default_max)
    if arch == "toycity_small":
        if weights is not None:
            raise ValueError("toycity_small has no pretrained weights; load a checkpoint with course_lib.zoo.load('toycity')")
        model = _toycity_small(num_classes, **sizes, **kw)
    else:
        model = _torchvision_model(arch, num_classes, weights, sizes, kw)
    # ToyCity's objects are a few pixels wide at 128 x 256: torchvision's paste, which rounds boxes
    # to whole pixels, would cost them more mask AP than the model loses (course_lib.modeling.paste).
    paste = paste or ("course_lib" if arch == "toycity_small" else "torchvision")
    if paste != "torchvision":
        model.transform = transform_with_paste(model.transform, paste)
    if mask_targets != "soft" or mask_dice_weight:
        model.roi_heads = MaskLossRoIHeads.like(model.roi_heads, mask_targets, mask_dice_weight)
    return model


def _torchvision_model(arch: str, num_classes: int, weights: str | None, sizes: dict[str, int], kw: dict[str, Any]) -> MaskRCNN:
    """torchvision's builder for ``arch``: random weights, or COCO's (transferred to the course's classes)."""
    builder = _TORCHVISION_BUILDERS[arch]
    if weights is None:
        # Random init: these builders then use trainable BatchNorm (frozen BatchNorm, i.e. no
        # normalisation at all, is the default only of a bare resnet_fpn_backbone; a test checks).
        return builder(weights=None, weights_backbone=None, num_classes=num_classes, **sizes, **kw)
    try:
        coco = builder(weights=weights, **sizes, **kw)
    except urllib.error.URLError as error:  # torchvision downloads the weights on first use
        raise WeightsUnavailable(f"weights {weights}: cannot download them ({error.reason}); connect to the internet "
                                 "once (they are cached in torch's hub folder), or build without weights") from None
    if num_classes == COCO_NUM_SLOTS:
        return coco
    if num_classes != NUM_CLASSES:
        raise ValueError(f"COCO weights transfer to the course's {NUM_CLASSES} classes or stay at {COCO_NUM_SLOTS}; got num_classes={num_classes}")
    return transfer_coco_heads(coco, replace_heads(copy.deepcopy(coco), num_classes))


class ClassAgnosticMaskLogits(nn.Conv2d):
    """One mask for all classes: a 1x1 conv to a single map, repeated for each of ``num_classes``.

    ``[R, C, 28, 28] -> [R, num_classes, 28, 28]`` (a view: every class reads the same map), so
    torchvision's loss (the logits of each RoI's true class) and inference (those of its predicted
    class) work unchanged. Class-specific logits train each class's map only on that class's RoIs;
    here every positive RoI trains the one map. The Mask R-CNN paper (He et al. 2017, section 4.2)
    found class-agnostic masks nearly as good on COCO: 29.7 vs 30.3 mask AP with ResNet-50-C4.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__(in_channels, 1, 1)
        self.num_classes = num_classes
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).expand(-1, self.num_classes, -1, -1)


def _group_norm(channels: int) -> nn.GroupNorm:
    # 32 groups as in Wu & He (2018); statistics per image, so batch size 2-4 is no problem.
    return nn.GroupNorm(32, channels)


#: One anchor size per FPN level (strides 4, 8, 16, 32) for ToyCity objects at 128 x 256 (~8-100 px).
TOYCITY_ANCHOR_SIZES = (16, 32, 64, 128)


def _toycity_small(
    num_classes: int,
    *,
    min_size: int,
    max_size: int,
    fpn_channels: int = 128,
    anchor_sizes: Sequence[int] = TOYCITY_ANCHOR_SIZES,
    mask_head_convs: int = 2,
    mask_head_channels: int | None = None,
    mask_stem_channels: int = 32,
    class_agnostic_masks: bool = False,
    **kw: Any,
) -> MaskRCNN:
    """ResNet-18 (GroupNorm, up to ``layer3``) + FPN + small heads; ~5.5 M parameters.

    Feature maps for a 128x256 input: strides 4, 8, 16 ('0', '1', '2') plus a max-pooled
    stride-32 level ('pool') for the RPN; one anchor size per level (``anchor_sizes``, chosen for
    ToyCity objects of ~8-100 px) x 3 aspect ratios. ``layer4`` (8.4 M of ResNet-18's 11.7 M
    parameters) is dropped: at 128 px its stride-32 map is 4x8 cells, too coarse to help.

    The mask head also reads the stride-2 stem (``mask_stem_channels`` > 0, see
    :mod:`course_lib.modeling.mask_skip`): at 128 x 256 a bicycle's tyres are thinner than a P2 cell.
    ``mask_stem_channels=0`` gives torchvision's mask head alone. ``class_agnostic_masks`` predicts
    one mask map for every class (:class:`ClassAgnosticMaskLogits`).

    Where the training time goes on a CPU: the mask head runs four 3x3 convs on every positive RoI
    in torchvision's default (~116 M multiply-adds per RoI at 128 channels), so this model uses
    ``mask_head_convs=2`` and samples 128 RoIs per image (at most 32 positives) instead of 512;
    and the backward of torchvision's RoI Align kernel scatters one sample at a time (a quarter of
    a training step here), so both poolers compute RoI Align as matrix products
    (:class:`course_lib.scratch.roi.SeparableMultiScaleRoIAlign`, same outputs). ``mask_head_channels``
    (default: the FPN's 128, as in torchvision) is the width of the mask convs, and half of it
    that of the stem head's 28 x 28 fuse conv; their multiply-adds grow with its square.
    """
    if len(anchor_sizes) != 4:
        raise ValueError(f"anchor_sizes needs one size per FPN level (4: strides 4, 8, 16, 32), got {anchor_sizes}")
    mask_channels = mask_head_channels or fpn_channels
    # GroupNorm's 32 groups must divide every mask conv; the stem head's 28 x 28 conv is half as wide.
    multiple = 64 if mask_stem_channels else 32
    if mask_channels % multiple:
        raise ValueError(f"mask_head_channels must be a multiple of {multiple} here (GroupNorm's 32 groups over its "
                         f"narrowest conv), got {mask_channels}")
    backbone = _toycity_backbone(fpn_channels, mask_stem_channels)
    anchors = AnchorGenerator(sizes=tuple((s,) for s in anchor_sizes), aspect_ratios=((0.5, 1.0, 2.0),) * 4)
    box_features = 256
    mask_pooler, mask_parts = _toycity_mask_head(num_classes, fpn_channels, mask_head_convs, mask_channels,
                                                 mask_stem_channels, class_agnostic_masks)
    settings: dict[str, Any] = dict(
        # Fewer proposals and RoIs than the COCO defaults: ToyCity scenes hold < 20 objects, and
        # in training 200 proposals per image learned as well per step as 500, in less time.
        rpn_pre_nms_top_n_train=400, rpn_post_nms_top_n_train=200,
        rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300,
        box_batch_size_per_image=128, box_detections_per_img=50,
    )
    settings.update(kw)
    model = MaskRCNN(
        backbone,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        box_roi_pool=SeparableMultiScaleRoIAlign(TOYCITY_LEVELS, output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(fpn_channels * 7 * 7, box_features),
        box_predictor=FastRCNNPredictor(box_features, num_classes),
        **mask_parts,
        **settings,
    )
    # Both after construction: MaskRCNN accepts only a MultiScaleRoIAlign as mask pooler, and builds its RPN itself.
    model.roi_heads.mask_roi_pool = mask_pooler
    model.rpn = FPNLevelsRPN.like(model.rpn)  # the stem, if any, is for the mask head only
    return model


#: The FPN levels the RoI poolers read in the ToyCity model (strides 4, 8, 16; 'pool' is the RPN's alone).
TOYCITY_LEVELS = ["0", "1", "2"]


def _toycity_backbone(fpn_channels: int, mask_stem_channels: int) -> nn.Module:
    """ResNet-18 with GroupNorm up to ``layer3`` under an FPN (``fpn_channels`` wide, plus a max-pooled
    level); with ``mask_stem_channels`` > 0 it also hands the stride-2 stem to the mask head."""
    trunk = resnet18(weights=None, norm_layer=_group_norm)
    body_layers = OrderedDict((name, getattr(trunk, name)) for name in
                              ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"))
    return_layers = {"layer1": "0", "layer2": "1", "layer3": "2"}
    fpn = dict(in_channels_list=[64, 128, 256], out_channels=fpn_channels, extra_blocks=LastLevelMaxPool())
    if mask_stem_channels:
        return BackboneWithStem(nn.Sequential(body_layers), {"relu": STEM, **return_layers}, **fpn,
                                stem_in=64, stem_channels=mask_stem_channels)
    return BackboneWithFPN(nn.Sequential(body_layers), return_layers, **fpn)


def _toycity_mask_head(num_classes: int, fpn_channels: int, convs: int, channels: int, stem_channels: int,
                       class_agnostic: bool) -> tuple[nn.Module, dict[str, nn.Module]]:
    """``(mask pooler, {"mask_head", "mask_predictor"})``: ``convs`` GroupNorm convs ``channels`` wide, fused
    with the stem at 28 x 28 when ``stem_channels`` > 0; one mask map for all classes if ``class_agnostic``."""
    if stem_channels:
        pooler = StemSkipMaskPooler(TOYCITY_LEVELS, output_size=14, sampling_ratio=2)
        parts = dict(
            mask_head=StemSkipMaskHead(fpn_channels, stem_channels, convs, channels, channels // 2, _group_norm),
            mask_predictor=nn.Sequential(OrderedDict(mask_fcn_logits=nn.Conv2d(channels // 2, num_classes, 1))),
        )
    else:
        pooler = SeparableMultiScaleRoIAlign(TOYCITY_LEVELS, output_size=14, sampling_ratio=2)
        parts = dict(
            mask_head=MaskRCNNHeads(fpn_channels, [channels] * convs, 1, norm_layer=_group_norm),
            mask_predictor=MaskRCNNPredictor(channels, channels, num_classes),
        )
    if class_agnostic:
        predictor = parts["mask_predictor"]
        predictor.mask_fcn_logits = ClassAgnosticMaskLogits(predictor.mask_fcn_logits.in_channels, num_classes)
    return pooler, parts


def state_dict_megabytes(model: nn.Module) -> float:
    """Size of the model's fp32 state dict in MB (10^6 bytes), as saved by ``torch.save``."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6
