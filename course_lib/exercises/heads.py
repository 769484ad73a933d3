"""Exercises of Week 1's second half: the heads' masks and losses, the RPN's labels and top-k, and the metrics."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.roi_heads import maskrcnn_inference, maskrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import box_iou, masks_to_boxes

from course_lib.exercises.core import Exercise, Mistake, register
from course_lib.exercises.generate import distinct_scores, iou_with_ties, seeded
from course_lib.structures import masks as library_masks


def _logit_cases(seed: int, shapes=((3, 4, 5), (5, 9, 7), (1, 3, 4))):
    g = seeded(seed)
    return [(torch.randn(rois, classes, side, side, generator=g) * 3, torch.randint(1, classes, (rois,), generator=g)) for rois, classes, side in shapes]


def _logit_generated(seed: int):
    """Edge shapes: no RoI, one RoI, two classes, 1 x 1 masks, every RoI of the last class; then larger random ones."""
    g = seeded(seed)
    edges = [(torch.zeros(0, 4, 5, 5), torch.zeros(0, dtype=torch.int64)), (torch.randn(1, 2, 3, 3, generator=g), torch.tensor([1])),
             (torch.randn(4, 6, 1, 1, generator=g), torch.full((4,), 5)), (torch.randn(3, 3, 2, 2, generator=g) * 20, torch.tensor([1, 2, 1]))]
    return edges + _logit_cases(seed + 100, [(20, 9, 28), (7, 2, 14), (12, 5, 6)])


# --- the mask head --------------------------------------------------------------------------------


def class_masks(mask_logits, labels):
    """[R, C, M, M] logits, [R] labels -> [R, M, M] probabilities."""
    return mask_logits[torch.arange(len(labels)), labels].sigmoid()


register(Exercise(
    name="class_masks", chapter="book/week1/05_heads_and_masks", title="Pick the class-specific mask", solution=class_masks,
    cases=lambda: _logit_cases(0), generated=lambda: _logit_generated(30),
    expected=lambda logits, labels: maskrcnn_inference(logits, [labels])[0][:, 0], agrees_with="torchvision's maskrcnn_inference",
    hint="index channel labels[r] of RoI r (mask_logits[arange(R), labels]), then a sigmoid; no RoIs -> a [0, M, M] tensor",
    mistakes=(
        Mistake(lambda logits, labels: logits[:, 0].sigmoid(), "each RoI reads the channel of ITS class (labels[r]), not channel 0"),
        Mistake(lambda logits, labels: logits.softmax(dim=1)[torch.arange(len(labels)), labels],
                "Mask R-CNN scores each class's mask with its own sigmoid; a softmax across classes couples them"),
        Mistake(lambda logits, labels: logits[torch.arange(len(labels)), labels], "these are logits: apply a sigmoid to get probabilities"),
        Mistake(lambda logits, labels: logits[torch.arange(len(labels)), labels - 1].sigmoid(),
                "channel c belongs to class c (channel 0 is the background's, never read): no - 1"),
    ),
))


def mask_loss(mask_logits, labels, targets):
    """Logits [R, C, M, M], labels [R], targets [R, M, M] -> scalar."""
    if len(labels) == 0:  # no positive RoI: a zero loss that still has a gradient, never the NaN of an empty mean
        return mask_logits.sum() * 0
    own_class = mask_logits[torch.arange(len(labels)), labels]
    return F.binary_cross_entropy_with_logits(own_class, targets)


def _with_targets(cases, seed):
    g = seeded(seed)
    return [(logits, labels, (torch.rand(len(labels), *logits.shape[-2:], generator=g) > 0.5).float()) for logits, labels in cases]


def _torchvision_mask_loss(logits, labels, targets):
    """torchvision's maskrcnn_loss with each target already M x M: a box [-0.5, -0.5, M - 0.5, M - 0.5] makes its RoI Align an identity."""
    side = logits.shape[-1]
    boxes = torch.tensor([[-0.5, -0.5, side - 0.5, side - 0.5]]).repeat(len(labels), 1)
    return maskrcnn_loss(logits, [boxes], [targets], [labels], [torch.arange(len(labels))])


register(Exercise(
    name="mask_loss", chapter="book/week1/05_heads_and_masks", title="The mask loss on the ground-truth class", solution=mask_loss,
    cases=lambda: _with_targets(_logit_cases(1), 1), generated=lambda: _with_targets(_logit_generated(31), 31),
    expected=_torchvision_mask_loss, agrees_with="torchvision's maskrcnn_loss",
    hint="mean binary cross-entropy (with logits) between channel labels[r] of RoI r and its target; with no RoI, 0 (mask_logits.sum() * 0)",
    mistakes=(
        Mistake(lambda logits, labels, targets: F.binary_cross_entropy_with_logits(logits, targets[:, None].expand_as(logits)),
                "only the ground-truth class's channel enters the loss; the other classes' masks get no gradient"),
        Mistake(lambda logits, labels, targets: F.binary_cross_entropy_with_logits(logits[torch.arange(len(labels)), logits.flatten(2).mean(2).argmax(1)], targets),
                "read the channel of the GROUND-TRUTH class, not the class the head currently favours"),
        Mistake(lambda logits, labels, targets: F.binary_cross_entropy(logits[torch.arange(len(labels)), labels].clamp(0, 1), targets),
                "the head outputs logits: use binary_cross_entropy_with_logits (or apply a sigmoid first)"),
        Mistake(lambda logits, labels, targets: F.binary_cross_entropy_with_logits(logits[torch.arange(len(labels)), labels], targets),
                "an image with no positive RoI gives an empty mean, NaN, which poisons the weights: return mask_logits.sum() * 0 then"),
    ),
))


# --- the RPN, without the misconceptions --------------------------------------------------------


def anchor_labels(iou):
    """IoU [G, A] -> [A] labels: 1 object, 0 background, -1 ignored."""
    best_per_anchor, _ = iou.max(dim=0)
    labels = torch.full((iou.shape[1],), -1.0)
    labels[best_per_anchor < 0.3] = 0.0
    labels[best_per_anchor >= 0.7] = 1.0
    # each box's best anchor(s), ties included, are positive however low their IoU
    best_per_box = iou.max(dim=1, keepdim=True).values
    labels[(iou == best_per_box).any(dim=0)] = 1.0
    return labels


def _matcher_labels(iou):
    matches = Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou)
    return torch.where(matches >= 0, 1.0, torch.where(matches == Matcher.BELOW_LOW_THRESHOLD, 0.0, -1.0))


def _anchor_label_cases():
    g = seeded(3)
    cases = []
    for boxes, anchors in [(3, 40), (1, 25), (5, 80)]:
        gt = torch.rand(boxes, 2, generator=g) * 50
        gt = torch.cat([gt, gt + torch.rand(boxes, 2, generator=g) * 30 + 10], dim=1)
        xy = torch.rand(anchors, 2, generator=g) * 60
        grid = torch.cat([xy, xy + torch.rand(anchors, 2, generator=g) * 30 + 8], dim=1)
        cases.append((box_iou(gt, grid),))
    return cases


def _anchor_label_generated():
    f64 = torch.float64
    edges = [torch.tensor([[0.7, 0.3, 0.29, 0.69]], dtype=f64),  # exactly at both thresholds
             torch.tensor([[0.5, 0.5, 0.1], [0.2, 0.6, 0.6]], dtype=f64),  # each box's best anchor tied: both positive
             torch.tensor([[0.8, 0.1, 0.0], [0.0, 0.0, 0.0]], dtype=f64),  # a box overlapping nothing: every anchor at 0 is its "best"
             torch.tensor([[0.2]], dtype=f64), torch.tensor([[0.0, 0.25, 0.25, 0.1]], dtype=f64), torch.tensor([[0.3], [0.7], [0.1]], dtype=f64)]
    g = seeded(32)
    ties = [iou_with_ties(int(rows), int(cols), g, (0.7, 0.3, 0.0, 0.5, 0.9)) for rows, cols in torch.randint(1, 9, (20, 2), generator=g).tolist()]
    return [(m,) for m in edges + ties]


def labels_by(iou, positive, negative, best_anchors):
    """Anchor labels [A] under given rules: ``positive`` and ``negative`` of each anchor's best IoU, ``best_anchors(iou)`` forced positive.

    The bank's threshold and tie mistakes are this function with one rule changed.
    """
    best_per_anchor = iou.max(dim=0).values
    labels = torch.full((iou.shape[1],), -1.0)
    labels[negative(best_per_anchor)] = 0.0
    labels[positive(best_per_anchor)] = 1.0
    labels[best_anchors(iou)] = 1.0
    return labels


def every_best(iou):
    """[A] bool: the anchors tied at some box's maximum IoU (torchvision's low-quality matches)."""
    return (iou == iou.max(dim=1, keepdim=True).values).any(dim=0)


register(Exercise(
    name="anchor_labels", chapter="book/week1/06_misconceptions", title="Label anchors for the RPN", solution=anchor_labels,
    cases=_anchor_label_cases, generated=_anchor_label_generated, expected=_matcher_labels,
    agrees_with="torchvision's `Matcher(0.7, 0.3, allow_low_quality_matches=True)`",
    hint="positive at IoU >= 0.7 with some box, negative below 0.3, ignored (-1) in between, and each box's best anchor(s), every tie included, positive",
    mistakes=(
        Mistake(lambda iou: torch.where(iou.max(0).values >= 0.7, 1.0, torch.where(iou.max(0).values < 0.3, 0.0, -1.0)),
                "a box whose anchors all stay below 0.7 would have no positive: also mark each box's best anchor(s) positive"),
        Mistake(lambda iou: torch.where(anchor_labels(iou) == -1, 0.0, anchor_labels(iou)),
                "anchors with IoU between 0.3 and 0.7 are ignored (-1): neither object nor background"),
        Mistake(lambda iou: (iou.max(0).values > 0.5).float(), "the RPN does not split at 0.5: 1 at >= 0.7, 0 below 0.3, -1 in between"),
        Mistake(lambda iou: labels_by(iou, lambda v: v > 0.7, lambda v: v < 0.3, every_best), "an anchor with IoU exactly 0.7 is positive: the test is IoU >= 0.7"),
        Mistake(lambda iou: labels_by(iou, lambda v: v >= 0.7, lambda v: v <= 0.3, every_best), "an anchor with IoU exactly 0.3 is ignored, not background: negative means IoU < 0.3"),
        Mistake(lambda iou: labels_by(iou, lambda v: v >= 0.7, lambda v: v < 0.3, lambda m: m.argmax(dim=1)),
                "argmax keeps one best anchor per box and drops the ties: mark EVERY anchor equal to the box's maximum (iou == iou.max(dim=1, keepdim=True).values)"),
        Mistake(lambda iou: labels_by(iou, lambda v: v >= 0.7, lambda v: v < 0.3, lambda m: ((m == m.max(dim=1, keepdim=True).values) & (m.max(dim=1, keepdim=True).values > 0)).any(dim=0)),
                "torchvision's Matcher keeps a box's best anchors even when that best IoU is 0 (every anchor then ties): no > 0 guard"),
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


def _rpn_top_k(scores, levels, k):
    """torchvision's RegionProposalNetwork._get_top_n_idx on the scores grouped by level (its anchors come level by level)."""
    if len(scores) == 0:
        return []
    order = torch.sort(levels, stable=True).indices
    per_level = torch.unique(levels, sorted=True, return_counts=True)[1].tolist()
    rpn = RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, dict(training=k, testing=k), dict(training=k, testing=k), 0.7).eval()
    return order[rpn._get_top_n_idx(scores[order][None], per_level)[0]].tolist()


def _top_k_cases():
    g = seeded(4)
    return [(distinct_scores(n, g), torch.randint(0, levels, (n,), generator=g), k) for n, levels, k in [(20, 3, 4), (50, 5, 6), (12, 2, 10)]]


def _top_k_generated():
    g = seeded(33)
    edges = [(torch.zeros(0), torch.zeros(0, dtype=torch.int64), 3), (torch.tensor([0.4]), torch.tensor([2]), 1),
             (torch.tensor([0.1, 0.9, 0.5, 0.7]), torch.tensor([3, 3, 3, 3]), 2), (torch.tensor([0.2, 0.8, 0.6]), torch.tensor([4, 0, 4]), 1),
             (distinct_scores(9, g), torch.tensor([2, 0, 2, 0, 2, 0, 2, 0, 2]), 100)]
    random = [(distinct_scores(n, g), torch.randint(0, lv, (n,), generator=g) * 2, k) for n, lv, k in [(30, 4, 1), (80, 5, 7), (15, 3, 5), (60, 2, 30)]]
    return edges + random


register(Exercise(
    name="top_k_per_level", chapter="book/week1/06_misconceptions", title="Top-k per level, not a score threshold", solution=top_k_per_level,
    cases=_top_k_cases, generated=_top_k_generated, expected=_rpn_top_k, agrees_with="torchvision's RegionProposalNetwork._get_top_n_idx",
    hint="for each level in increasing order: the indices of its k highest scores (all of them if it has fewer), best first",
    mistakes=(
        Mistake(lambda scores, levels, k: scores.topk(min(k * len(levels.unique()), len(scores))).indices.tolist(),
                "take the top k of EACH level: one global top-k lets the finest, largest level crowd out the others"),
        Mistake(lambda scores, levels, k: (scores > 0.5).nonzero().flatten().tolist(), "no score threshold: the RPN keeps the k best of each level, whatever their scores"),
        Mistake(lambda scores, levels, k: sorted(top_k_per_level(scores, levels, k)), "keep each level's indices ordered by score, best first (levels in increasing order)"),
        Mistake(lambda scores, levels, k: sorted(top_k_per_level(scores, levels, k), key=lambda i: -scores[i]),
                "keep the levels apart, in increasing level order: the best-first order holds inside each level's block"),
    ),
))


# --- metrics --------------------------------------------------------------------------------------


def mask_iou(mask_a, mask_b):
    """IoU of two boolean masks [H, W]: shared pixels over pixels in either."""
    union = (mask_a | mask_b).sum()
    return float((mask_a & mask_b).sum() / union) if union else 0.0


def _mask_pair(g, h, w):
    a, b = torch.zeros(h, w, dtype=torch.bool), torch.zeros(h, w, dtype=torch.bool)
    a[: h // 2 + 1, 1 : w - 2] = True
    b[h // 3 :, w // 3 :] = True
    b &= torch.rand(h, w, generator=g) > 0.3  # a ragged, non-rectangular shape
    return a, b


def _mask_generated():
    empty, full = torch.zeros(5, 6, dtype=torch.bool), torch.ones(5, 6, dtype=torch.bool)
    pixel = empty.clone()
    pixel[2, 3] = True
    row = torch.tensor([[True, False, True, True, False, False, True]])
    g = seeded(34)
    edges = [(empty, empty), (empty, full), (full, full), (pixel, pixel), (pixel, full), (row, ~row), (row, row | ~row)]
    return edges + [(torch.rand(h, w, generator=g) > p, torch.rand(h, w, generator=g) > p) for h, w, p in [(10, 10, 0.5), (3, 40, 0.2), (32, 32, 0.9), (1, 1, 0.5)]]


register(Exercise(
    name="mask_iou", chapter="book/week1/07_baseline_metrics", title="Mask IoU", solution=mask_iou,
    cases=lambda: [_mask_pair(seeded(5), h, w) for h, w in [(8, 8), (12, 20), (16, 10), (6, 9)]], generated=_mask_generated,
    expected=lambda a, b: float(library_masks.mask_iou(a[None], b[None])[0, 0]), agrees_with="pycocotools' mask IoU",
    hint="count pixels: |A and B| / |A or B|; two empty masks: 0.0, as pycocotools returns",
    mistakes=(
        Mistake(lambda a, b: float((a & b).sum() / a.sum()), "divide by the UNION (pixels in either mask), not by one mask's area"),
        Mistake(lambda a, b: float(box_iou(masks_to_boxes(a[None]), masks_to_boxes(b[None]))[0, 0]), "that is the IoU of the masks' boxes: mask IoU counts the pixels themselves"),
        Mistake(lambda a, b: float((a & b).sum() / (a.sum() + b.sum())), "the union is |A| + |B| - |A and B|: the shared pixels were counted twice"),
        Mistake(lambda a, b: float((a & b).sum() / (a | b).sum()), "two empty masks have an empty union (0 / 0 is NaN): return 0.0 then, as pycocotools does"),
    ),
))


def mean_ap(per_class_ap):
    """Mean AP over the classes whose AP is defined (not NaN)."""
    defined = [ap for ap in per_class_ap.values() if not math.isnan(ap)]
    return sum(defined) / len(defined) if defined else float("nan")


def _nanmean(per_class_ap):
    values = np.asarray(list(per_class_ap.values()), dtype=float)
    return float(np.nanmean(values)) if (~np.isnan(values)).any() else float("nan")  # nanmean of nothing warns; the value is the same NaN


def _mean_ap_generated():
    edges = [{"car": float("nan"), "bus": float("nan")}, {"car": 0.7}, {"car": 0.0, "bus": 0.0}, {"car": float("nan"), "bus": 0.0}]
    rng = np.random.default_rng(61)
    random = [{f"class{i}": float("nan") if rng.random() < 0.25 else float(rng.choice([0.0, rng.random()])) for i in range(n)} for n in rng.integers(1, 12, 10)]
    return [(d,) for d in edges + random]


register(Exercise(
    name="mean_ap", chapter="book/week1/07_baseline_metrics", title="Mean AP over classes", solution=mean_ap,
    cases=lambda: [({"car": 0.5, "person": 0.25, "bus": float("nan")},), ({"car": 0.4, "truck": 0.1},), ({"car": 0.3, "train": float("nan"), "bicycle": 0.0, "rider": 0.2},)],
    generated=_mean_ap_generated,
    expected=_nanmean, agrees_with="np.nanmean, as COCOeval averages",
    hint="average the classes whose AP is defined; a class without ground truth (NaN) is left out; no class defined -> NaN",
    mistakes=(
        Mistake(lambda d: sum(0.0 if math.isnan(v) else v for v in d.values()) / len(d), "a class without ground truth has no AP (NaN): leave it out, do not count it as 0"),
        Mistake(lambda d: sum(d.values()) / len(d), "one NaN makes a plain mean NaN: leave out the classes whose AP is NaN"),
        Mistake(lambda d: sum(v for v in d.values() if v > 0 and not math.isnan(v)) / max(1, sum(v > 0 for v in d.values())),
                "a class with AP 0 was found nowhere: it counts as 0 in the mean; only NaN (no ground truth) is left out"),
        Mistake(lambda d: mean_ap(d) if any(not math.isnan(v) for v in d.values()) else 0.0,
                "when no class has ground truth the mean is undefined: NaN, not 0 (a 0 would read as a model that found nothing)"),
    ),
))
