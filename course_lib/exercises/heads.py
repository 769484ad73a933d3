"""Exercises of Week 1's second half: the heads' masks and losses, the RPN's labels and top-k, and the metrics."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.roi_heads import maskrcnn_inference
from torchvision.ops import box_iou, masks_to_boxes

from course_lib.evaluation.matched_masks import mask_iou_matrix
from course_lib.exercises.core import Exercise, Mistake, register


def _logit_cases(seed: int):
    g = torch.Generator().manual_seed(seed)
    cases = []
    for rois, classes, side in [(3, 4, 5), (5, 9, 7), (1, 3, 4)]:
        logits = torch.randn(rois, classes, side, side, generator=g) * 3
        labels = torch.randint(1, classes, (rois,), generator=g)
        cases.append((logits, labels))
    return cases


# --- the mask head --------------------------------------------------------------------------------


def class_masks(mask_logits, labels):
    """[R, C, M, M] logits, [R] labels -> [R, M, M] probabilities."""
    return mask_logits[torch.arange(len(labels)), labels].sigmoid()


register(Exercise(
    name="class_masks", chapter="book/week1/05_heads_and_masks", title="Pick the class-specific mask", solution=class_masks,
    cases=lambda: _logit_cases(0),
    expected=lambda logits, labels: maskrcnn_inference(logits, [labels])[0][:, 0], agrees_with="torchvision's maskrcnn_inference",
    hint="index channel labels[r] of RoI r (mask_logits[arange(R), labels]), then a sigmoid",
    mistakes=(
        Mistake(lambda logits, labels: logits[:, 0].sigmoid(), "each RoI reads the channel of ITS class (labels[r]), not channel 0"),
        Mistake(lambda logits, labels: logits.softmax(dim=1)[torch.arange(len(labels)), labels],
                "Mask R-CNN scores each class's mask with its own sigmoid; a softmax across classes couples them"),
        Mistake(lambda logits, labels: logits[torch.arange(len(labels)), labels], "these are logits: apply a sigmoid to get probabilities"),
    ),
))


def mask_loss(mask_logits, labels, targets):
    """Logits [R, C, M, M], labels [R], targets [R, M, M] -> scalar."""
    own_class = mask_logits[torch.arange(len(labels)), labels]
    return F.binary_cross_entropy_with_logits(own_class, targets)


def _mask_loss_cases():
    g = torch.Generator().manual_seed(1)
    return [(logits, labels, (torch.rand(len(labels), *logits.shape[-2:], generator=g) > 0.5).float()) for logits, labels in _logit_cases(1)]


register(Exercise(
    name="mask_loss", chapter="book/week1/05_heads_and_masks", title="The mask loss on the ground-truth class", solution=mask_loss,
    cases=_mask_loss_cases, agrees_with="binary cross-entropy on each RoI's ground-truth channel",
    hint="mean binary cross-entropy (with logits) between channel labels[r] of RoI r and its target",
    mistakes=(
        Mistake(lambda logits, labels, targets: F.binary_cross_entropy_with_logits(logits, targets[:, None].expand_as(logits)),
                "only the ground-truth class's channel enters the loss; the other classes' masks get no gradient"),
        Mistake(lambda logits, labels, targets: F.binary_cross_entropy_with_logits(logits[torch.arange(len(labels)), logits.flatten(2).mean(2).argmax(1)], targets),
                "read the channel of the GROUND-TRUTH class, not the class the head currently favours"),
        Mistake(lambda logits, labels, targets: F.binary_cross_entropy(logits[torch.arange(len(labels)), labels].clamp(0, 1), targets),
                "the head outputs logits: use binary_cross_entropy_with_logits (or apply a sigmoid first)"),
    ),
))


# --- the RPN, without the misconceptions --------------------------------------------------------


def anchor_labels(iou):
    """IoU [G, A] -> [A] labels: 1 object, 0 background, -1 ignored."""
    best_per_anchor, _ = iou.max(dim=0)
    labels = torch.full((iou.shape[1],), -1.0)
    labels[best_per_anchor < 0.3] = 0.0
    labels[best_per_anchor >= 0.7] = 1.0
    # each box's best anchor(s) are positive, however low their IoU
    best_per_box = iou.max(dim=1, keepdim=True).values
    best = (iou == best_per_box) & (best_per_box > 0)
    labels[best.any(dim=0)] = 1.0
    return labels


def _matcher_labels(iou):
    matches = Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou)
    return torch.where(matches >= 0, 1.0, torch.where(matches == Matcher.BELOW_LOW_THRESHOLD, 0.0, -1.0))


def _anchor_label_cases():
    g = torch.Generator().manual_seed(3)
    cases = []
    for boxes, anchors in [(3, 40), (1, 25), (5, 80)]:
        gt = torch.rand(boxes, 2, generator=g) * 50
        gt = torch.cat([gt, gt + torch.rand(boxes, 2, generator=g) * 30 + 10], dim=1)
        xy = torch.rand(anchors, 2, generator=g) * 60
        grid = torch.cat([xy, xy + torch.rand(anchors, 2, generator=g) * 30 + 8], dim=1)
        cases.append((box_iou(gt, grid),))
    return cases


register(Exercise(
    name="anchor_labels", chapter="book/week1/06_misconceptions", title="Label anchors for the RPN", solution=anchor_labels,
    cases=_anchor_label_cases, expected=_matcher_labels, agrees_with="torchvision's Matcher(0.7, 0.3, allow_low_quality_matches=True)",
    hint="positive at IoU >= 0.7 with some box, negative below 0.3, ignored (-1) in between, and each box's best anchor(s) positive",
    mistakes=(
        Mistake(lambda iou: torch.where(iou.max(0).values >= 0.7, 1.0, torch.where(iou.max(0).values < 0.3, 0.0, -1.0)),
                "a box whose anchors all stay below 0.7 would have no positive: also mark each box's best anchor(s) positive"),
        Mistake(lambda iou: torch.where(anchor_labels(iou) == -1, 0.0, anchor_labels(iou)),
                "anchors with IoU between 0.3 and 0.7 are ignored (-1): neither object nor background"),
        Mistake(lambda iou: (iou.max(0).values > 0.5).float(), "the RPN does not split at 0.5: 1 at >= 0.7, 0 below 0.3, -1 in between"),
    ),
))


def top_k_per_level(scores, levels, k):
    """Indices of the k best scores of each level, best first."""
    keep = []
    for level in levels.unique(sorted=True).tolist():
        members = (levels == level).nonzero().flatten()
        best = scores[members].topk(min(k, len(members))).indices
        keep += members[best].tolist()
    return keep


def _top_k_cases():
    g = torch.Generator().manual_seed(4)
    return [(torch.rand(n, generator=g), torch.randint(0, levels, (n,), generator=g), k) for n, levels, k in [(20, 3, 4), (50, 5, 6), (12, 2, 10)]]


register(Exercise(
    name="top_k_per_level", chapter="book/week1/06_misconceptions", title="Top-k per level, not a score threshold", solution=top_k_per_level,
    cases=_top_k_cases, hint="for each level in increasing order: the indices of its k highest scores, best first",
    mistakes=(
        Mistake(lambda scores, levels, k: scores.topk(min(k * len(levels.unique()), len(scores))).indices.tolist(),
                "take the top k of EACH level: one global top-k lets the finest, largest level crowd out the others"),
        Mistake(lambda scores, levels, k: (scores > 0.5).nonzero().flatten().tolist(), "no score threshold: the RPN keeps the k best of each level, whatever their scores"),
        Mistake(lambda scores, levels, k: sorted(top_k_per_level(scores, levels, k)), "keep each level's indices ordered by score, best first (levels in increasing order)"),
    ),
))


# --- metrics --------------------------------------------------------------------------------------


def mask_iou(mask_a, mask_b):
    """IoU of two boolean masks [H, W]: shared pixels over pixels in either."""
    union = (mask_a | mask_b).sum()
    return float((mask_a & mask_b).sum() / union) if union else 0.0


def _mask_cases():
    g = torch.Generator().manual_seed(5)
    cases = []
    for h, w in [(8, 8), (12, 20), (16, 10), (6, 9)]:
        a, b = torch.zeros(h, w, dtype=torch.bool), torch.zeros(h, w, dtype=torch.bool)
        a[: h // 2 + 1, 1 : w - 2] = True
        b[h // 3 :, w // 3 :] = True
        b &= torch.rand(h, w, generator=g) > 0.3  # a ragged, non-rectangular shape
        cases.append((a, b))
    return cases


register(Exercise(
    name="mask_iou", chapter="book/week1/07_baseline_metrics", title="Mask IoU", solution=mask_iou, cases=_mask_cases,
    expected=lambda a, b: float(mask_iou_matrix(a[None], b[None])[0, 0]), agrees_with="pycocotools' mask IoU",
    hint="count pixels: |A and B| / |A or B|",
    mistakes=(
        Mistake(lambda a, b: float((a & b).sum() / a.sum()), "divide by the UNION (pixels in either mask), not by one mask's area"),
        Mistake(lambda a, b: float(box_iou(masks_to_boxes(a[None]), masks_to_boxes(b[None]))[0, 0]), "that is the IoU of the masks' boxes: mask IoU counts the pixels themselves"),
        Mistake(lambda a, b: float((a & b).sum() / (a.sum() + b.sum())), "the union is |A| + |B| - |A and B|: the shared pixels were counted twice"),
    ),
))


def mean_ap(per_class_ap):
    """Mean AP over the classes whose AP is defined (not NaN)."""
    defined = [ap for ap in per_class_ap.values() if not math.isnan(ap)]
    return sum(defined) / len(defined) if defined else float("nan")


register(Exercise(
    name="mean_ap", chapter="book/week1/07_baseline_metrics", title="Mean AP over classes", solution=mean_ap,
    cases=lambda: [({"car": 0.5, "person": 0.25, "bus": float("nan")},), ({"car": 0.4, "truck": 0.1},), ({"car": 0.3, "train": float("nan"), "bicycle": 0.0, "rider": 0.2},)],
    expected=lambda d: float(np.nanmean(list(d.values()))), agrees_with="np.nanmean, as COCOeval averages",
    hint="average the classes whose AP is defined; a class without ground truth (NaN) is left out",
    mistakes=(
        Mistake(lambda d: sum(0.0 if math.isnan(v) else v for v in d.values()) / len(d), "a class without ground truth has no AP (NaN): leave it out, do not count it as 0"),
        Mistake(lambda d: sum(d.values()) / len(d), "one NaN makes a plain mean NaN: leave out the classes whose AP is NaN"),
        Mistake(lambda d: sum(v for v in d.values() if v > 0 and not math.isnan(v)) / max(1, sum(v > 0 for v in d.values())),
                "a class with AP 0 was found nowhere: it counts as 0 in the mean; only NaN (no ground truth) is left out"),
    ),
))
