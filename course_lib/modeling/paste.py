"""From an ``M x M`` box-frame mask to a full-image mask: pasting, and where its half pixels go.

Mask R-CNN predicts each instance's mask as a 28 x 28 map *in its box's frame*. To compare it with
a ground-truth mask, the map is "pasted": every image pixel covered by the box reads the map by
bilinear interpolation. Which point of the map a pixel reads is a matter of convention, and on
small objects the convention decides a large share of the mask AP:

* torchvision's ``RoIAlign(aligned=False)`` (used by its Mask R-CNN for the mask features *and*
  the training targets) puts the value of pixel ``j`` at coordinate ``j`` (not ``j + 0.5``), so
  cell ``i`` of a box ``[x0, x1)`` describes the image point ``x0 + (i + 0.5) (x1 - x0) / M``.
  A consistent paste lets pixel ``j`` read the map at coordinate ``j``: ``pixel_offset=0``.
* Pixel-centre conventions (``aligned=True``, Detectron2's ROIAlignV2, ``course_lib.tracking.track``) put
  pixel ``j``'s value at ``j + 0.5``: ``pixel_offset=0.5``.

torchvision's own ``paste_masks_in_image`` (the legacy Detectron paste) instead rounds each box to
whole pixels and resizes the map into that rectangle; for an object a few pixels wide the
rounding shifts and stretches the mask by up to a pixel. :func:`oracle_masks` measures the cost:
perfect boxes and perfect 28 x 28 targets, pasted back, score a mask AP of 0.64 with torchvision's
paste and 0.91 with :func:`paste_masks` on 100 held-out ToyCity scenes at 128 x 256 (the Week 2
evaluation chapter computes both).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import paste_masks_in_image, project_masks_on_boxes
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import box_iou

from course_lib.structures.matching import gate_by_class


def sample_box_masks(masks: Tensor, boxes: Tensor, xs: Tensor, ys: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Sample box-frame maps ``[P, M, M]`` bilinearly at image points ``ys x xs``: ``[P, Gy, Gx]``.

    ``boxes``: ``[P, 4]`` XYXY; ``xs``: ``[P, Gx]`` and ``ys``: ``[P, Gy]`` image coordinates in
    the maps' own convention (see the module docstring). grid_sample's normalised coordinates
    (align_corners=False) put -1 and +1 on the outer edges of the map, i.e. on the box edges.
    Between the box edge and the outermost cell centres (half a cell), and outside the box,
    ``padding_mode="zeros"`` fades to zero; ``"border"`` repeats the outermost cells.
    """
    width = (boxes[:, 2:3] - boxes[:, 0:1]).clamp(min=1e-3)
    height = (boxes[:, 3:4] - boxes[:, 1:2]).clamp(min=1e-3)
    u = 2 * (xs - boxes[:, 0:1]) / width - 1  # [P, Gx]
    v = 2 * (ys - boxes[:, 1:2]) / height - 1  # [P, Gy]
    gy, gx = ys.shape[1], xs.shape[1]
    grid = torch.stack([u[:, None, :].expand(-1, gy, -1), v[:, :, None].expand(-1, -1, gx)], dim=-1)  # [P, Gy, Gx, (x, y)]
    return F.grid_sample(masks[:, None].to(grid.dtype), grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)[:, 0]


def paste_masks(masks: Tensor, boxes: Tensor, height: int, width: int, pixel_offset: float | tuple[float, float] = 0.0,
                threshold: float | None = None) -> Tensor:
    """Paste box-frame maps ``[N, M, M]`` into ``[N, H, W]`` images (zeros outside each box).

    Pixel ``j`` reads the map at image coordinate ``j + pixel_offset`` (a number, or ``(x, y)``
    offsets); only the pixels near the box are computed, so the cost grows with the boxes' area,
    not with ``N x H x W``. Float output, or uint8 ``> threshold`` when a threshold is given
    (a quarter of the memory: 30 float masks of 1024 x 2048 are 250 MB).
    """
    offset_x, offset_y = pixel_offset if isinstance(pixel_offset, tuple) else (pixel_offset, pixel_offset)
    dtype = torch.float32 if threshold is None else torch.uint8
    out = torch.zeros(len(masks), height, width, dtype=dtype, device=masks.device)
    # The pixels whose sample point j + offset lies inside the box: j in [ceil(x0 - offset), ceil(x1 - offset)).
    offsets = torch.tensor([offset_x, offset_y, offset_x, offset_y], dtype=torch.float32, device=boxes.device)
    corners = (boxes.float() - offsets).ceil().long()
    lo, hi = corners[:, :2].clamp(min=0).tolist(), corners[:, 2:].tolist()
    for i, ((x0, y0), (x1, y1)) in enumerate(zip(lo, hi)):
        x1, y1 = min(x1, width), min(y1, height)
        if x1 <= x0 or y1 <= y0:
            continue  # the box lies outside the image
        xs = torch.arange(x0, x1, device=masks.device, dtype=torch.float32) + offset_x
        ys = torch.arange(y0, y1, device=masks.device, dtype=torch.float32) + offset_y
        # Only points inside the box are read; "border" keeps its outer half cell at the edge cells' value.
        values = sample_box_masks(masks[i : i + 1], boxes[i : i + 1].float(), xs[None], ys[None], "border")[0]
        out[i, y0:y1, x0:x1] = values if threshold is None else values > threshold
    return out


def resized_pixel_offset(resized: tuple[int, int], original: tuple[int, int]) -> tuple[float, float]:
    """``pixel_offset`` for pasting, in the original image, maps predicted on a resized copy of it.

    ``GeneralizedRCNNTransform`` resizes with ``interpolate(align_corners=False)``: original pixel
    ``J`` lands at resized coordinate ``(J + 0.5) s - 0.5`` (scale ``s``), which is original
    coordinate ``J + 0.5 - 0.5 / s``. With no resize (``s = 1``) the offset is 0.
    """
    (rh, rw), (oh, ow) = resized, original
    return 0.5 - 0.5 * ow / rw, 0.5 - 0.5 * oh / rh


class ExactPasteTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform with :func:`paste_masks` in place of its rounding paste.

    Identical resize, normalisation and box rescaling; only the masks' paste changes.
    """

    def postprocess(self, result: list[dict[str, Tensor]], image_shapes: list[tuple[int, int]],
                    original_image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        if self.training:
            return result
        for prediction, resized, original in zip(result, image_shapes, original_image_sizes):
            boxes = resize_boxes(prediction["boxes"], resized, original)
            if "masks" in prediction:
                # The maps hold resized pixel r's value at coordinate r; original pixel J sits at resized
                # coordinate (J + 0.5) s - 0.5, which is original coordinate J + offset.
                offset = resized_pixel_offset(resized, original)
                prediction["masks"] = paste_masks(prediction["masks"][:, 0], boxes, *original, pixel_offset=offset)[:, None]
            prediction["boxes"] = boxes
        return result


PASTES = {"course_lib": ExactPasteTransform, "torchvision": GeneralizedRCNNTransform}


def _check_paste(paste: str) -> None:
    if paste not in PASTES:
        raise ValueError(f"paste must be one of {', '.join(PASTES)}, got {paste!r}")


def transform_with_paste(transform: GeneralizedRCNNTransform, paste: str) -> GeneralizedRCNNTransform:
    """A transform with ``transform``'s resize and normalisation that pastes masks with ``"course_lib"``
    (:func:`paste_masks`) or ``"torchvision"`` (``paste_masks_in_image``); for the builder's ``paste``."""
    _check_paste(paste)
    return PASTES[paste](transform.min_size, transform.max_size, transform.image_mean, transform.image_std,
                         transform.size_divisible, transform.fixed_size, _skip_resize=transform._skip_resize)


@torch.no_grad()
def oracle_masks(target: dict[str, Tensor], paste: str = "course_lib", resolution: int = 28) -> Tensor:
    """What a perfect Mask R-CNN would output for ``target``: ``[N, 1, H, W]`` uint8 masks.

    The ground-truth masks are turned into ``resolution``-square training targets exactly as
    torchvision does (``project_masks_on_boxes``, i.e. ``RoIAlign(aligned=False)``) and pasted
    back over the ground-truth boxes with ``paste="course_lib"`` (:func:`paste_masks`) or
    ``"torchvision"`` (``paste_masks_in_image``), then thresholded at 0.5.
    """
    _check_paste(paste)
    masks = torch.as_tensor(target["masks"])
    boxes = torch.as_tensor(target["boxes"]).float()
    height, width = masks.shape[-2:]
    if len(boxes) == 0:
        return torch.zeros(0, 1, height, width, dtype=torch.uint8)
    maps = project_masks_on_boxes(masks, boxes, torch.arange(len(boxes)), resolution)
    if paste == "course_lib":
        pasted = paste_masks(maps, boxes, height, width)[:, None]
    else:
        pasted = paste_masks_in_image(maps[:, None], boxes, (height, width), padding=1)
    return (pasted > 0.5).to(torch.uint8)


@torch.no_grad()
def perfect_masks_in_detected_boxes(prediction: dict[str, Tensor], target: dict[str, Tensor], iou: float = 0.5,
                                    resolution: int = 28) -> Tensor:
    """``prediction["masks"]`` (``[P, 1, H, W]``, thresholded) with a perfect mask head's output
    wherever a detection found an object: ``[P, 1, H, W]`` uint8.

    A detection that matches a ground-truth object of its class (box IoU >= ``iou``; the best one)
    gets that object's ``resolution``-square training target, made in the *detected* box (as
    torchvision's ``project_masks_on_boxes``), pasted with :func:`paste_masks` and thresholded at
    0.5. Other detections keep their masks. The mask AP of the result is what the model's own
    boxes and scores would reach with a perfect mask head.
    """
    masks = prediction["masks"].clone().to(torch.uint8)
    boxes = prediction["boxes"].float()
    if len(boxes) == 0 or len(target["boxes"]) == 0:
        return masks
    overlap = gate_by_class(box_iou(boxes, torch.as_tensor(target["boxes"]).float()), prediction["labels"], target["labels"])
    best, match = overlap.max(dim=1)
    found = best >= iou
    if found.any():
        gt_masks = torch.as_tensor(target["masks"])
        maps = project_masks_on_boxes(gt_masks, boxes[found], match[found], resolution)
        masks[found] = paste_masks(maps, boxes[found], *gt_masks.shape[-2:], threshold=0.5)[:, None]
    return masks
