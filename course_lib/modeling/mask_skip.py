"""A mask head that also reads the backbone's stride-2 stem: fine detail for thin objects.

Mask R-CNN's mask head pools a ``14 x 14`` grid from an FPN level, whose finest map (P2) has a
stride of 4 pixels; four convs and a 2x deconvolution turn it into the ``28 x 28`` mask. For the
large objects of COCO or Cityscapes at 1024 px that is plenty. A 20-pixel ToyCity bicycle at
128 x 256 covers 5 x 5 cells of P2, and its 1-pixel tyres and frame fall between them: the head
can only guess where they are, and predicts a blurred ring.

This head adds a skip connection in the manner of U-Net: the backbone also returns its stem
(``conv1`` after normalisation, stride 2), projected to a few channels by a 1x1 conv; the pooler
reads it with RoI Align at ``28 x 28``; the head upsamples its ``14 x 14`` FPN path to 28, concatenates
the stem features and fuses them with one 3x3 conv before the per-class 1x1 logits. The
training target, loss and inference are torchvision's, unchanged. Only the mask head reads the
stem: the RPN and the box head see the FPN levels alone (:func:`fpn_levels`).

    FPN levels --RoI Align 14x14--> 2 convs --deconv--> [R, F, 28, 28] --+
    stem (stride 2) --1x1--> --RoI Align 28x28--> [R, S, 28, 28] --------+--cat--> conv --> logits [R, K, 28, 28]
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops.misc import Conv2dNormActivation

from course_lib.scratch.roi import SeparableMultiScaleRoIAlign

#: Name of the stem's map in the backbone's output dict.
STEM = "stem"


def fpn_levels(features: dict[str, Tensor]) -> OrderedDict[str, Tensor]:
    """The maps the RPN (and its anchors, one size per level) works on: every feature but the stem."""
    return OrderedDict((name, f) for name, f in features.items() if name != STEM)


class BackboneWithStem(BackboneWithFPN):
    """torchvision's ``BackboneWithFPN`` whose output dict also holds the stem's map under :data:`STEM`.

    ``return_layers`` maps one body layer to :data:`STEM` (e.g. ``{"relu": STEM, "layer1": "0", ...}``);
    that map, ``[N, stem_in, H/2, W/2]``, skips the FPN and is projected to ``stem_channels`` by a 1x1
    conv (fewer channels to pool for every RoI).
    """

    def __init__(self, body: nn.Module, return_layers: dict[str, str], in_channels_list: list[int],
                 out_channels: int, stem_in: int, stem_channels: int, **fpn_kwargs) -> None:
        super().__init__(body, return_layers, in_channels_list, out_channels, **fpn_kwargs)
        self.stem_projection = nn.Conv2d(stem_in, stem_channels, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        maps = self.body(x)
        stem = maps.pop(STEM)
        features = self.fpn(maps)
        features[STEM] = self.stem_projection(stem)
        return features


class FPNLevelsRPN(RegionProposalNetwork):
    """torchvision's RPN fed only :func:`fpn_levels` (its anchor generator has one size per FPN level)."""

    @classmethod
    def like(cls, rpn: RegionProposalNetwork) -> "FPNLevelsRPN":
        """An ``FPNLevelsRPN`` holding ``rpn``'s anchor generator and head, with its settings."""
        return cls(rpn.anchor_generator, rpn.head, rpn.proposal_matcher.high_threshold, rpn.proposal_matcher.low_threshold,
                   rpn.fg_bg_sampler.batch_size_per_image, rpn.fg_bg_sampler.positive_fraction,
                   dict(rpn._pre_nms_top_n), dict(rpn._post_nms_top_n), rpn.nms_thresh, rpn.score_thresh)

    def forward(self, images, features, targets=None):
        return super().forward(images, fpn_levels(features), targets)


class StemSkipMaskPooler(nn.Module):
    """RoI Align of each box twice: ``[R, C, M, M]`` from the FPN levels and ``[R, S, 2M, 2M]`` from the stem."""

    def __init__(self, levels: list[str], output_size: int = 14, sampling_ratio: int = 2) -> None:
        super().__init__()
        self.fpn = SeparableMultiScaleRoIAlign(levels, output_size, sampling_ratio)
        self.stem = SeparableMultiScaleRoIAlign([STEM], 2 * output_size, sampling_ratio)

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        return self.fpn(x, boxes, image_shapes), self.stem(x, boxes, image_shapes)


class StemSkipMaskHead(nn.Module):
    """``([R, C, M, M], [R, S, 2M, 2M]) -> [R, F, 2M, 2M]``: torchvision's mask convs (``head_channels``
    wide) on the FPN grid, a 2x deconvolution to ``F = fused_channels``, then one 3x3 conv over
    those and the stem features."""

    def __init__(self, fpn_channels: int, stem_channels: int, convs: int, head_channels: int, fused_channels: int,
                 norm_layer: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.fpn_convs = MaskRCNNHeads(fpn_channels, [head_channels] * convs, 1, norm_layer=norm_layer)
        self.upsample = nn.ConvTranspose2d(head_channels, fused_channels, 2, stride=2)
        self.fuse = Conv2dNormActivation(fused_channels + stem_channels, fused_channels, 3, norm_layer=norm_layer)

    def forward(self, pooled: tuple[Tensor, Tensor]) -> Tensor:
        fpn, stem = pooled
        upsampled = F.relu(self.upsample(self.fpn_convs(fpn)))
        # under autocast the two paths can differ in dtype: cat needs one
        return self.fuse(torch.cat([upsampled, stem.to(upsampled.dtype)], dim=1))
