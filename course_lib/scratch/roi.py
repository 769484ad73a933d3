"""RoI Pool and RoI Align written out: how a box of any size becomes a fixed ``C x 7 x 7`` feature.

Both divide the RoI (scaled into feature-map coordinates by ``spatial_scale = 1 / stride``) into an
``output_size`` grid of bins and summarise each bin:

* **RoI Pool** rounds the box to whole cells, splits it into whole-cell bins (floor/ceil), and
  takes the max of each bin. Rounding the corners moves them by up to half a cell, and the floor/ceil
  of the bins' edges by up to one more, so a bin can read features about one cell (``stride``
  image pixels) from where it should: harmless for a class label, visible in a 28 x 28 mask.
* **RoI Align** keeps the box in real coordinates, places ``sampling_ratio**2`` regularly spaced
  points in each bin, reads each point by bilinear interpolation of its 4 neighbouring cells, and
  averages. ``aligned=True`` subtracts half a cell so that a cell's value sits at its centre
  (``aligned=False`` is what torchvision's Mask R-CNN uses, for backward compatibility).

Feature cell ``(i, j)`` holds the value at continuous coordinate ``(y, x) = (i, j)``. Results equal
``torchvision.ops.roi_pool`` / ``roi_align`` (tests check within 1e-5 in float32).

RoI Align is *linear* in the features, and its bilinear weights split into a row part and a column
part, so for one RoI it is two small matrix products: ``out[c] = Wy @ F[c] @ Wx.T`` with ``Wy``
``[PH, H]`` and ``Wx`` ``[PW, W]`` (each row: the mean bilinear weights of one bin's samples).
:func:`roi_align_separable` computes it that way; its backward is two matrix products too, where
the per-sample kernel scatters one value at a time. :class:`SeparableMultiScaleRoIAlign` uses it
inside Mask R-CNN: same result as torchvision's pooler, a faster training step on a CPU.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import roi_align as roi_align_kernel
from torchvision.ops.poolers import _setup_scales  # the level scales torchvision's own pooler infers


def _as_rois(rois: Tensor | Sequence[Tensor]) -> Tensor:
    """Accept ``Tensor[K, 5]`` (batch index, x1, y1, x2, y2) or one ``Tensor[L, 4]`` per image."""
    if isinstance(rois, Tensor):
        if rois.ndim != 2 or rois.shape[1] != 5:
            raise ValueError(
                f"rois must be Tensor[K, 5] (batch_index, x1, y1, x2, y2) or a list of Tensor[L, 4], got shape {tuple(rois.shape)}"
            )
        return rois
    return torch.cat([torch.cat([torch.full((len(b), 1), i, dtype=b.dtype, device=b.device), b], dim=1) for i, b in enumerate(rois)])


def bilinear_sample(feature_map: Tensor, y: Tensor, x: Tensor) -> Tensor:
    """Read ``feature_map`` (``Tensor[C, H, W]``) at real-valued points: ``-> Tensor[C, *shape]``.

    ``y`` and ``x`` broadcast to ``shape``. The value is the area-weighted mix of the 4 surrounding
    cells. Border rule of torchvision's kernels: a point more than one cell outside the map reads 0;
    a point between -1 and 0 is clamped to 0; a point beyond the last cell reads the last cell.
    """
    _, height, width = feature_map.shape
    y, x = torch.broadcast_tensors(y.to(feature_map.dtype), x.to(feature_map.dtype))
    outside = (y < -1.0) | (y > height) | (x < -1.0) | (x > width)
    y, x = y.clamp(min=0), x.clamp(min=0)
    y_low, x_low = y.floor().long(), x.floor().long()
    y_edge, x_edge = y_low >= height - 1, x_low >= width - 1
    y_low, x_low = y_low.clamp(max=height - 1), x_low.clamp(max=width - 1)
    y_high, x_high = (y_low + 1).clamp(max=height - 1), (x_low + 1).clamp(max=width - 1)
    ly = torch.where(y_edge, 0.0, y - y_low)  # on the last row all weight goes to that row
    lx = torch.where(x_edge, 0.0, x - x_low)
    hy, hx = 1.0 - ly, 1.0 - lx
    value = (
        hy * hx * feature_map[:, y_low, x_low]
        + hy * lx * feature_map[:, y_low, x_high]
        + ly * hx * feature_map[:, y_high, x_low]
        + ly * lx * feature_map[:, y_high, x_high]
    )
    return torch.where(outside, 0.0, value)


def align_sampling_grid(
    box: Tensor, output_size: int | Sequence[int], spatial_scale: float, sampling_ratio: int, aligned: bool
) -> tuple[Tensor, Tensor]:
    """Where RoI Align samples one ``box`` (``Tensor[4]``, image pixels), in feature-map coordinates.

    Returns ``ys: Tensor[PH, GH]`` (row ``ph`` holds the GH sample rows of bin row ``ph``) and
    ``xs: Tensor[PW, GW]``; the samples of bin ``(ph, pw)`` are all pairs of ``ys[ph]`` and ``xs[pw]``.
    ``sampling_ratio <= 0`` picks ``ceil(bin size)`` samples per bin side, as torchvision does.
    """
    pooled_h, pooled_w = _pair(output_size)
    # float32 throughout, like the kernel, so that ceil() and the sample positions agree bit for bit
    scale = torch.tensor(spatial_scale, dtype=torch.float32)
    x1, y1, x2, y2 = box.float() * scale - (0.5 if aligned else 0.0)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # legacy behaviour: a degenerate box still covers one cell
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_h, bin_w = roi_h / pooled_h, roi_w / pooled_w
    grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_h.item())
    grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_w.item())
    # sample k of bin p sits at start + p * bin + (k + 0.5) * bin / grid: the centres of a sub-grid
    ys = y1 + torch.arange(pooled_h)[:, None] * bin_h + (torch.arange(grid_h)[None, :] + 0.5) * bin_h / grid_h
    xs = x1 + torch.arange(pooled_w)[:, None] * bin_w + (torch.arange(grid_w)[None, :] + 0.5) * bin_w / grid_w
    return ys, xs


def bin_sampling_points(
    box: Tensor,
    output_size: int | Sequence[int],
    spatial_scale: float,
    sampling_ratio: int = 2,
    aligned: bool = False,
    bin_index: tuple[int, int] = (0, 0),
) -> Tensor:
    """The RoI Align sample points of one bin as ``Tensor[GH * GW, 2]`` of (x, y) feature-map coordinates."""
    ys, xs = align_sampling_grid(box, output_size, spatial_scale, sampling_ratio, aligned)
    y, x = torch.meshgrid(ys[bin_index[0]], xs[bin_index[1]], indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)


def roi_align(
    features: Tensor,
    rois: Tensor | Sequence[Tensor],
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoI Align by explicit bilinear sampling: ``Tensor[N, C, H, W] -> Tensor[K, C, PH, PW]``.

    ``rois`` is ``Tensor[K, 5]`` (batch index, x1, y1, x2, y2) or a list of ``Tensor[L, 4]`` per
    image, in image pixels. Same arguments and result as ``torchvision.ops.roi_align``.
    """
    rois = _as_rois(rois)
    pooled_h, pooled_w = _pair(output_size)
    out = features.new_zeros((len(rois), features.shape[1], pooled_h, pooled_w))
    for k, roi in enumerate(rois):
        ys, xs = align_sampling_grid(roi[1:], output_size, spatial_scale, sampling_ratio, aligned)
        grid_h, grid_w = ys.shape[1], xs.shape[1]
        # samples[c, ph, gh, pw, gw]: every sample of every bin, then the mean per bin
        samples = bilinear_sample(features[int(roi[0])], ys[:, :, None, None], xs[None, None, :, :])
        out[k] = samples.sum(dim=(2, 4)) / max(grid_h * grid_w, 1)
    return out


def _round_half_away(values: Tensor) -> Tensor:
    """C's ``round()``: halves go away from zero (``torch.round`` would round them to even)."""
    return torch.sign(values) * torch.floor(values.abs() + 0.5)


def pool_bins(
    box: Tensor, output_size: int | Sequence[int], spatial_scale: float, feature_size: Sequence[int]
) -> list[list[tuple[int, int, int, int]]]:
    """The whole cells each RoI Pool bin of ``box`` covers: ``bins[ph][pw] = (row_start, row_end, col_start, col_end)``.

    The box is rounded to whole cells (its end cell included); bin ``p`` spans ``floor(p * bin)``
    to ``ceil((p + 1) * bin)`` cells (so neighbouring bins may share a cell), clipped to the
    ``feature_size = (H, W)`` map. An empty range means the bin lies off the map.
    """
    pooled_h, pooled_w = _pair(output_size)
    height, width = feature_size
    scale = torch.tensor(spatial_scale, dtype=torch.float32)  # float32 like the kernel, so halves round alike
    x1, y1, x2, y2 = _round_half_away(box.float() * scale).long().tolist()
    bin_h = torch.tensor(max(y2 - y1 + 1, 1), dtype=torch.float32) / pooled_h
    bin_w = torch.tensor(max(x2 - x1 + 1, 1), dtype=torch.float32) / pooled_w
    rows = torch.arange(pooled_h + 1, dtype=torch.float32) * bin_h
    cols = torch.arange(pooled_w + 1, dtype=torch.float32) * bin_w
    row_start = (torch.floor(rows[:-1]).long() + y1).clamp(0, height).tolist()
    row_end = (torch.ceil(rows[1:]).long() + y1).clamp(0, height).tolist()
    col_start = (torch.floor(cols[:-1]).long() + x1).clamp(0, width).tolist()
    col_end = (torch.ceil(cols[1:]).long() + x1).clamp(0, width).tolist()
    return [
        [(row_start[ph], row_end[ph], col_start[pw], col_end[pw]) for pw in range(pooled_w)] for ph in range(pooled_h)
    ]


def roi_pool(
    features: Tensor, rois: Tensor | Sequence[Tensor], output_size: int | Sequence[int], spatial_scale: float = 1.0
) -> Tensor:
    """RoI (max) Pool with its quantisation: ``Tensor[N, C, H, W] -> Tensor[K, C, PH, PW]``.

    Same arguments and result as ``torchvision.ops.roi_pool``: each bin (see :func:`pool_bins`)
    takes the max over its cells, and an empty bin gives 0.
    """
    rois = _as_rois(rois)
    pooled_h, pooled_w = _pair(output_size)
    out = features.new_zeros((len(rois), features.shape[1], pooled_h, pooled_w))
    for k, roi in enumerate(rois):
        feature_map = features[int(roi[0])]
        for ph, row in enumerate(pool_bins(roi[1:], output_size, spatial_scale, feature_map.shape[-2:])):
            for pw, (r0, r1, c0, c1) in enumerate(row):
                if r1 > r0 and c1 > c0:
                    out[k, :, ph, pw] = feature_map[:, r0:r1, c0:c1].amax(dim=(1, 2))
    return out


def axis_weights(start: Tensor, length: Tensor, pooled: int, sampling_ratio: int, size: int) -> Tensor:
    """One axis of RoI Align as a matrix: ``Tensor[K, pooled, size]``.

    ``start``, ``length``: ``Tensor[K]``, each RoI's first coordinate and extent on this axis in
    feature-map cells. Row ``p`` of RoI ``k`` holds the bilinear weight that each of the ``size``
    cells gets from the ``sampling_ratio`` samples of bin ``p``, averaged: the 1-D version of
    :func:`align_sampling_grid` + :func:`bilinear_sample`, with the same border rules.
    """
    bin_size = (length / pooled)[:, None, None]
    arange = functools.partial(torch.arange, dtype=start.dtype, device=start.device)
    # the kernel's own arithmetic (start + p * bin + (s + 0.5) * bin / S), so positions agree bit for bit
    coords = start[:, None, None] + arange(pooled)[:, None] * bin_size + (arange(sampling_ratio) + 0.5) * bin_size / sampling_ratio
    inside = ((coords >= -1.0) & (coords <= size)).to(coords.dtype)
    coords = coords.clamp(min=0)
    low = coords.floor().long()
    fraction = torch.where(low >= size - 1, 0.0, coords - low)  # on the last cell all weight stays there
    low = low.clamp(max=size - 1)
    high = (low + 1).clamp(max=size - 1)
    weights = coords.new_zeros((*coords.shape, size))
    weights.scatter_add_(-1, low[..., None], ((1 - fraction) * inside)[..., None])
    weights.scatter_add_(-1, high[..., None], (fraction * inside)[..., None])
    return weights.mean(dim=2)


def roi_align_separable(
    features: Tensor,
    rois: Tensor | Sequence[Tensor],
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    aligned: bool = False,
) -> Tensor:
    """RoI Align as ``Wy @ F @ Wx.T`` per RoI: ``Tensor[N, C, H, W] -> Tensor[K, C, PH, PW]``.

    Same arguments and result as ``torchvision.ops.roi_align`` (within float rounding) for a fixed
    ``sampling_ratio > 0``; the adaptive ``sampling_ratio <= 0`` gives every RoI its own number of
    samples, which no shared matrix shape holds.
    """
    if sampling_ratio <= 0:
        raise ValueError(f"roi_align_separable needs a fixed sampling_ratio > 0, got {sampling_ratio}; "
                         "use torchvision.ops.roi_align for the adaptive one")
    rois = _as_rois(rois)
    pooled_h, pooled_w = _pair(output_size)
    _, channels, height, width = features.shape
    # positions in the kernel's precision: float32, or float64 for float64 features
    boxes = rois[:, 1:].to(torch.promote_types(features.dtype, torch.float32)) * spatial_scale - (0.5 if aligned else 0.0)
    roi_w, roi_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    if not aligned:  # legacy behaviour: a degenerate box still covers one cell
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    w_y = axis_weights(boxes[:, 1], roi_h, pooled_h, sampling_ratio, height).to(features.dtype)
    w_x = axis_weights(boxes[:, 0], roi_w, pooled_w, sampling_ratio, width).to(features.dtype)
    out = features.new_zeros((len(rois), channels, pooled_h, pooled_w))
    for image in rois[:, 0].unique().long().tolist():
        k = torch.where(rois[:, 0] == image)[0]
        feature_map = features[image]
        if height <= width:  # contract the longer axis first: the smaller intermediate
            columns = torch.einsum("chw,kqw->kchq", feature_map, w_x[k])
            out[k] = torch.einsum("kph,kchq->kcpq", w_y[k], columns)
        else:
            rows = torch.einsum("kph,chw->kcpw", w_y[k], feature_map)
            out[k] = torch.einsum("kcpw,kqw->kcpq", rows, w_x[k])
    return out


class SeparableMultiScaleRoIAlign(MultiScaleRoIAlign):
    """``torchvision.ops.MultiScaleRoIAlign`` (same level assignment, scales and outputs) that computes
    RoI Align with :func:`roi_align_separable` whenever a gradient will flow back into the features.

    On a CPU the kernel's backward, which adds every sample's gradient into the map one value at a
    time, was the largest single cost of a small Mask R-CNN's training step; the matrix form's
    backward is matrix products. Without a gradient (inference) the kernel stays: its forward
    touches only the sampled cells, while the dense products cost ~4x more for 300 proposals.
    """

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        """``x``: FPN maps by name; ``boxes``: ``Tensor[L_i, 4]`` per image (input pixels) -> ``Tensor[sum L_i, C, PH, PW]``."""
        features = [x[name] for name in self.featmap_names]
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(features, image_shapes, self.canonical_scale, self.canonical_level)
        rois = _as_rois(list(boxes))
        levels = self.map_levels(boxes)
        out = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        for level, (feature_map, scale) in enumerate(zip(features, self.scales)):
            k = torch.where(levels == level)[0]
            if len(k):
                align = roi_align_separable if torch.is_grad_enabled() and feature_map.requires_grad else roi_align_kernel
                # levels can differ in dtype under autocast: cast into the result's
                out[k] = align(feature_map, rois[k], self.output_size, scale, self.sampling_ratio).to(out.dtype)
        return out


def with_kernel_roi_align(model: nn.Module) -> nn.Module:
    """``model`` with every :class:`SeparableMultiScaleRoIAlign` replaced, in place, by torchvision's
    ``MultiScaleRoIAlign`` of the same settings (the kernel in training too, and a traceable graph)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SeparableMultiScaleRoIAlign):
                setattr(parent, name, MultiScaleRoIAlign(child.featmap_names, child.output_size, child.sampling_ratio,
                                                         canonical_scale=child.canonical_scale, canonical_level=child.canonical_level))
    return model
