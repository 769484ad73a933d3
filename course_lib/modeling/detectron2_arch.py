"""torchvision's Mask R-CNN with Detectron2's conventions, so that Detectron2's weights give Detectron2's outputs.

``build(depth, num_classes, min_size, max_size)`` returns a torchvision ``MaskRCNN`` R{50,101}-FPN
in which every place where the two libraries differ follows Detectron2
(``configs/Base-RCNN-FPN.yaml`` and its defaults):

* input: Detectron2 feeds BGR pixels in 0-255 minus ``PIXEL_MEAN`` (std 1). The course feeds RGB
  in 0-1, so the mean/std are reversed and divided by 255 (``course_lib.zoo.detectron2_weights`` reverses
  the first convolution's input channels): the same arithmetic, one input convention for the course.
* backbone: the MSRA ResNet strides in the first 1x1 convolution of a stage (``STRIDE_IN_1X1``),
  torchvision's in the 3x3; frozen BatchNorm, FPN with a max-pooled P6.
* proposals: ranked by objectness logits, not by their (saturating) sigmoid.
* anchors: sizes 32-512 on strides 4-64, ratios 0.5/1/2, not rounded, offset 0, fixed strides.
* RoI pooling: ``ROIAlignV2`` (``aligned=True``, adaptive sampling) in both poolers.
* resize: to Detectron2's test size (``ResizeShortestEdge``, rounded half up), with PIL on uint8
  pixels as its ``DefaultPredictor`` does, before normalising; the bounds come from the entry's config.
* outputs: boxes scaled back, clipped and filtered as ``detector_postprocess`` does; masks pasted
  into the image by sampling at pixel centres (Detectron2's ``paste_masks_in_image``).
* test time: score threshold 0.05, NMS 0.5, 100 detections, RPN 1000/1000 proposals at NMS 0.7,
  box regression weights (10, 10, 5, 5).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import Tensor
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from course_lib.errors import BadInput

PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)  # MODEL.PIXEL_MEAN
PIXEL_STD_BGR = (1.0, 1.0, 1.0)
ANCHOR_SIZES = (32, 64, 128, 256, 512)
ASPECT_RATIOS = (0.5, 1.0, 2.0)
FEATURE_STRIDES = (4, 8, 16, 32, 64)  # P2..P6


class Detectron2Anchors(AnchorGenerator):
    """Detectron2's ``DefaultAnchorGenerator``: unrounded cell anchors and fixed strides.

    torchvision rounds cell anchors to whole pixels (32 at ratio 0.5 becomes 46 x 22, not
    45.25 x 22.63) and infers strides as padded size // map size, which is not 64 for a P6 map of
    an image padded to a multiple of 32 but not 64. Either would shift every proposal.
    """

    def __init__(self, offset: float = 0.0) -> None:
        super().__init__(tuple((s,) for s in ANCHOR_SIZES), (ASPECT_RATIOS,) * len(ANCHOR_SIZES))
        self.strides = FEATURE_STRIDES
        self.cell_anchors = [self.detectron2_cell(size, offset * stride) for size, stride in zip(ANCHOR_SIZES, FEATURE_STRIDES)]

    @staticmethod
    def detectron2_cell(size: int, shift: float) -> Tensor:
        """``Tensor[3, 4]``: one anchor per ratio (h/w), centred on ``shift``, in Detectron2's float arithmetic."""
        anchors = []
        for ratio in ASPECT_RATIOS:
            w = math.sqrt(size**2.0 / ratio)
            h = ratio * w
            anchors.append([shift - w / 2.0, shift - h / 2.0, shift + w / 2.0, shift + h / 2.0])
        return torch.tensor(anchors)

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        """-> per image ``Tensor[sum_l H_l W_l 3, 4]`` (location-major, ratio-minor, as Detectron2)."""
        self.set_cell_anchors(feature_maps[0].dtype, feature_maps[0].device)
        strides = [[torch.tensor(s), torch.tensor(s)] for s in self.strides]
        per_level = self.grid_anchors([list(f.shape[-2:]) for f in feature_maps], strides)
        return [torch.cat(per_level) for _ in image_list.image_sizes]


class AlignedMultiScaleRoIAlign(MultiScaleRoIAlign):
    """Detectron2's ``ROIPooler`` with ``ROIAlignV2``: ``aligned=True`` and its level rule.

    torchvision's pooler calls ``roi_align`` with ``aligned=False`` (a half-pixel shift, kept for
    backward compatibility) and a level rule with a different epsilon; weights trained with
    ``ROIAlignV2`` expect the half-pixel-correct sampling.
    """

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        """``x``: P2..P5 by name; ``boxes``: ``Tensor[L_i, 4]`` per image -> ``Tensor[sum L_i, 256, PH, PW]``."""
        features = [x[name] for name in self.featmap_names]
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
        sizes = torchvision.ops.box_area(rois[:, 1:]).sqrt()
        levels = torch.floor(4 + torch.log2(sizes / 224 + 1e-8)).clamp(2, 5).to(torch.int64) - 2
        out = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        for level, feature_map in enumerate(features):
            k = torch.where(levels == level)[0]
            scale = 1.0 / FEATURE_STRIDES[level]
            out[k] = roi_align(feature_map, rois[k], self.output_size, scale, self.sampling_ratio, aligned=True)
        return out


class Detectron2RPN(RegionProposalNetwork):
    """torchvision's RPN with Detectron2's proposal selection: NMS ranks by objectness *logits*.

    torchvision ranks by sigmoid probabilities, which round to exactly 1.0 in float32 above a
    logit of about 17: confident proposals then tie, and NMS keeps an arbitrary one of each group.
    """

    def filter_proposals(self, proposals: Tensor, objectness: Tensor, image_shapes: list[tuple[int, int]],
                         num_anchors_per_level: list[int]) -> tuple[list[Tensor], list[Tensor]]:
        """``proposals``: ``[N, A, 4]``, ``objectness``: ``[N * A, 1]`` -> per image boxes ``[P, 4]``, scores ``[P]``."""
        final_boxes, final_scores = [], []
        for boxes, logits, shape in zip(proposals, objectness.detach().reshape(len(proposals), -1), image_shapes):
            top = [s.topk(min(self.pre_nms_top_n(), len(s))).indices for s in logits.split(num_anchors_per_level)]
            starts = torch.tensor([0, *num_anchors_per_level[:-1]]).cumsum(0)
            index = torch.cat([t + start for t, start in zip(top, starts)])  # top-k per level
            level = torch.cat([torch.full_like(t, i) for i, t in enumerate(top)])
            boxes, logits = torchvision.ops.clip_boxes_to_image(boxes[index], shape), logits[index]
            nonempty = torch.where((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))[0]
            keep = nonempty[torchvision.ops.batched_nms(boxes[nonempty], logits[nonempty], level[nonempty], self.nms_thresh)]
            keep = keep[: self.post_nms_top_n()]
            final_boxes.append(boxes[keep])
            final_scores.append(logits[keep].sigmoid())
        return final_boxes, final_scores


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Detectron2's ``paste_masks_in_image`` (CPU path), soft: ``[N, 1, M, M]`` -> ``[N, 1, H, W]``.

    Each mask is resampled with ``grid_sample`` at the image's pixel centres inside its box (plus
    one pixel), zero elsewhere. torchvision instead pads the mask by one cell and resizes it onto the
    rounded box (maskrcnn-benchmark's method); the two disagree along object boundaries.
    """
    height, width = image_size
    out = masks.new_zeros((len(masks), 1, height, width))
    for i, (mask, box) in enumerate(zip(masks, boxes)):
        x0, y0 = (box[:2].floor() - 1).clamp(min=0).int().tolist()
        x1, y1 = int((box[2].ceil() + 1).clamp(max=width)), int((box[3].ceil() + 1).clamp(max=height))
        ys = (torch.arange(y0, y1, dtype=torch.float32, device=masks.device) + 0.5 - box[1]) / (box[3] - box[1]) * 2 - 1
        xs = (torch.arange(x0, x1, dtype=torch.float32, device=masks.device) + 0.5 - box[0]) / (box[2] - box[0]) * 2 - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]  # [1, h, w, (x, y)]
        out[i, :, y0:y1, x0:x1] = torch.nn.functional.grid_sample(mask[None], grid.to(mask), align_corners=False)[0]
    return out


def output_size(height: int, width: int, short_edge: int, max_size: int) -> tuple[int, int]:
    """Detectron2's test-time size of a ``height x width`` image: ``ResizeShortestEdge.get_output_shape``.

    The short side becomes ``short_edge`` unless the long side would pass ``max_size``; each side is
    then rounded half up (``int(x + 0.5)``), in Detectron2's float arithmetic, step for step.
    torchvision floors instead (``F.interpolate(scale_factor=..., recompute_scale_factor=True)``):
    342 x 548 becomes 1024 x 1641 in Detectron2, 1024 x 1640 in torchvision.
    """
    size = short_edge * 1.0
    scale = size / min(height, width)
    new_h, new_w = (size, scale * width) if height < width else (scale * height, size)
    if max(new_h, new_w) > max_size:
        scale = max_size * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    resized = int(new_h + 0.5), int(new_w + 0.5)
    if min(resized) == 0:
        raise BadInput(f"a {height}x{width} image is too elongated: with its long side at {max_size} pixels it would be "
                       f"{resized[0]}x{resized[1]}; crop it to an aspect ratio of at most {2 * max_size}:1")
    return resized


#: ``resize=`` of :func:`build`: how pixels are resampled to :func:`output_size`.
RESIZE_MODES = {
    "pil": "PIL's bilinear resize of the uint8 image (antialiased when shrinking), as Detectron2's DefaultPredictor",
    "interpolate": "F.interpolate on the float image, on its device, as Detectron2 resizes a float image",
}


class Detectron2Transform(GeneralizedRCNNTransform):
    """torchvision's transform with Detectron2's test-time steps, so that any image size gives Detectron2's outputs.

    * resize: to :func:`output_size` (rounded half up), *before* normalising, with PIL on uint8
      pixels (``resize="pil"``) or ``F.interpolate`` on floats (``"interpolate"``); see :data:`RESIZE_MODES`;
    * postprocess: Detectron2's ``detector_postprocess``: boxes scaled to the original size by
      ``original / resized`` per axis, clipped to it, empty ones dropped, masks pasted at pixel
      centres (:func:`paste_masks`).

    Inference only: Detectron2 trains with other resizes (``MIN_SIZE_TRAIN``).
    """

    def __init__(self, min_size: int, max_size: int, image_mean: list[float], image_std: list[float], resize: str = "pil") -> None:
        if resize not in RESIZE_MODES:
            raise BadInput(f"resize={resize!r} is not a resize of Detectron2's: choose one of {sorted(RESIZE_MODES)}")
        super().__init__(min_size, max_size, image_mean, image_std)
        self.resize_mode = resize

    def resize_image(self, image: Tensor) -> Tensor:
        """``[3, H, W]`` RGB in [0, 1] -> ``[3, h, w]``, ``(h, w) = output_size(H, W, ...)``."""
        size = output_size(*image.shape[-2:], self.min_size[-1], self.max_size)
        if self.resize_mode == "interpolate":
            return torch.nn.functional.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        pixels = (image * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()  # Detectron2 reads uint8 files
        resized = np.asarray(Image.fromarray(pixels).resize(size[::-1], Image.BILINEAR))  # channels resample alike: RGB = BGR
        return torch.from_numpy(resized.copy()).permute(2, 0, 1).to(image.device, image.dtype) / 255

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None) -> tuple[ImageList, None]:
        """``[3, H_i, W_i]`` float RGB in [0, 1] -> the normalised batch padded to 32, with each resized size."""
        if targets is not None:
            raise BadInput("a model converted from Detectron2's zoo is for inference: call model.eval() and give no targets")
        for image in images:
            if image.dim() != 3 or not image.is_floating_point() or 0 in image.shape:
                raise BadInput(f"expected float images [3, H, W] in [0, 1], H and W at least 1, "
                               f"got a {image.dtype} tensor of shape {tuple(image.shape)}")
        resized = [self.normalize(self.resize_image(image)) for image in images]
        sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in resized]
        return ImageList(self.batch_images(resized, self.size_divisible), sizes), None

    def postprocess(self, result: list[dict[str, Tensor]], image_shapes: list[tuple[int, int]],
                    original_image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Detectron2's ``detector_postprocess``: ``boxes [N, 4]`` in the resized image -> in the original one."""
        if self.training:
            return result
        for prediction, (resized_h, resized_w), (height, width) in zip(result, image_shapes, original_image_sizes):
            boxes = prediction["boxes"].clone()
            boxes[:, 0::2] *= width / resized_w  # a Python float times float32, as Boxes.scale
            boxes[:, 1::2] *= height / resized_h
            boxes[:, 0::2], boxes[:, 1::2] = boxes[:, 0::2].clamp(0, width), boxes[:, 1::2].clamp(0, height)
            prediction["boxes"] = boxes
            nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            prediction.update({key: value[nonempty] for key, value in prediction.items()})
            if "masks" in prediction:
                prediction["masks"] = paste_masks(prediction["masks"], prediction["boxes"], (height, width))
        return result


def build(depth: int, num_classes: int, min_size: int, max_size: int, resize: str = "pil", **options: Any) -> MaskRCNN:
    """An untrained ``MaskRCNN`` R{depth}-FPN like Detectron2's; ``num_classes`` counts background.

    ``resize``: how images are resampled to Detectron2's test size, one of :data:`RESIZE_MODES`.
    """
    backbone = resnet_fpn_backbone(
        backbone_name=f"resnet{depth}", weights=None, norm_layer=FrozenBatchNorm2d, extra_blocks=LastLevelMaxPool()
    )
    for stage in (backbone.body.layer2, backbone.body.layer3, backbone.body.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)  # MSRA ResNet: STRIDE_IN_1X1
    settings: dict[str, Any] = dict(
        min_size=min_size, max_size=max_size,
        image_mean=[m / 255 for m in reversed(PIXEL_MEAN_BGR)], image_std=[s / 255 for s in reversed(PIXEL_STD_BGR)],
        rpn_anchor_generator=Detectron2Anchors(),
        rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=1000, rpn_nms_thresh=0.7,
        box_roi_pool=AlignedMultiScaleRoIAlign(["0", "1", "2", "3"], 7, sampling_ratio=0),
        mask_roi_pool=AlignedMultiScaleRoIAlign(["0", "1", "2", "3"], 14, sampling_ratio=0),
        box_score_thresh=0.05, box_nms_thresh=0.5, box_detections_per_img=100,
        bbox_reg_weights=(10.0, 10.0, 5.0, 5.0),
    )
    model = MaskRCNN(backbone, num_classes=num_classes, **{**settings, **options})
    t, rpn = model.transform, model.rpn
    model.transform = Detectron2Transform(t.min_size, t.max_size, t.image_mean, t.image_std, resize)
    model.rpn = Detectron2RPN(rpn.anchor_generator, rpn.head, 0.7, 0.3, 256, 0.5, rpn._pre_nms_top_n, rpn._post_nms_top_n, rpn.nms_thresh)
    return model
