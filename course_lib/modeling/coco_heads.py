"""COCO's 91 category slots and the course's nine classes: transfer the heads to fine-tune, or read them zero-shot.

A COCO model predicts 91 category slots; the course predicts 9 classes. Two ways across:

* to **fine-tune**, :func:`replace_heads` swaps the three class-dependent layers and
  :func:`transfer_coco_heads` fills them with the rows COCO learned for the same classes (rider
  starts from person, a starting point that training then splits);
* to **use COCO as it is** (zero-shot), :func:`coco_zero_shot` keeps COCO's heads and reads their
  91-slot softmax in the course's classes: the scores are COCO's own, and rider, a class COCO
  never learned, is never predicted.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

from course_lib.classes import CLASSES, COCO_CATEGORY_ID, NUM_CLASSES

#: Number of category slots of torchvision's COCO detection models (indexed by COCO category id).
COCO_NUM_SLOTS = 91


def replace_heads(model: MaskRCNN, num_classes: int) -> MaskRCNN:
    """Swap the class-dependent layers (box classifier + regressor, mask logits) for ``num_classes``.

    Everything else (backbone, FPN, RPN, box head MLP, mask head convs) is class-agnostic and kept.
    Modifies ``model`` in place and returns it.
    """
    box_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(box_features, num_classes)
    logits = nn.Conv2d(model.roi_heads.mask_predictor.mask_fcn_logits.in_channels, num_classes, 1)
    nn.init.kaiming_normal_(logits.weight, mode="fan_out", nonlinearity="relu")  # as MaskRCNNPredictor
    nn.init.zeros_(logits.bias)
    model.roi_heads.mask_predictor.mask_fcn_logits = logits
    return model


def coco_rows() -> list[int]:
    """For each course class index, the COCO slot it is initialised from (``[0, 1, 1, 3, 8, ...]``).

    Background comes from background (slot 0). "rider" has no COCO category; it starts from COCO
    "person", because a rider *is* a person to COCO (annotated as person on a bicycle/motorcycle),
    so those rows already respond to rider-like appearance and mask shape. Fine-tuning then has
    only to learn the rider/person split (mostly context: the bike underneath), instead of
    learning a whole class from a random row.
    """
    rows = []
    for name in CLASSES:
        if name == "__background__":
            rows.append(0)
        else:
            rows.append(COCO_CATEGORY_ID["person" if name == "rider" else name])
    return rows


#: State-dict prefixes of the class-dependent layers; everything else is class-agnostic.
CLASS_LAYERS = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")


@torch.no_grad()
def transfer_coco_heads(coco_model: MaskRCNN, urban_model: MaskRCNN) -> MaskRCNN:
    """Initialise the 9-class ``urban_model`` from the 91-slot ``coco_model`` (same arch), in place.

    Class-agnostic layers (backbone, FPN, RPN, box head, mask head, ``conv5_mask``) are copied
    whole. Of the class-dependent layers, the rows of the matching COCO classes are copied
    (C = 91 COCO slots, K = 9 course classes, D = box feature size, M = mask head width):

    * ``box_predictor.cls_score``: weight ``[C, D] -> [K, D]``, bias ``[C] -> [K]``
    * ``box_predictor.bbox_pred``: weight ``[4C, D] -> [4K, D]`` (rows ``4c..4c+3`` per class)
    * ``mask_predictor.mask_fcn_logits`` (1x1 conv): weight ``[C, M, 1, 1] -> [K, M, 1, 1]``

    Which COCO slot feeds which class, and why rider starts from person: :func:`coco_rows`.
    """
    src_box, dst_box = coco_model.roi_heads.box_predictor, urban_model.roi_heads.box_predictor
    if src_box.cls_score.out_features != COCO_NUM_SLOTS or dst_box.cls_score.out_features != len(CLASSES):
        raise ValueError(
            f"expected a {COCO_NUM_SLOTS}-slot COCO model and a {len(CLASSES)}-class urban model, got "
            f"{src_box.cls_score.out_features} and {dst_box.cls_score.out_features} classes"
        )
    shared = {k: v for k, v in coco_model.state_dict().items() if not k.startswith(CLASS_LAYERS)}
    mismatch = "the two models differ beyond their class layers: build both with the same arch"
    try:
        missing, unexpected = urban_model.load_state_dict(shared, strict=False)
    except RuntimeError as error:  # shape mismatch
        raise ValueError(f"{mismatch} ({error})") from None
    if unexpected or any(not k.startswith(CLASS_LAYERS) for k in missing):
        raise ValueError(f"{mismatch} (missing {missing}, unexpected {unexpected})")

    rows = torch.tensor(coco_rows())
    box_rows = (rows[:, None] * 4 + torch.arange(4)).reshape(-1)  # [4K]: the 4 box deltas per class
    src_mask = coco_model.roi_heads.mask_predictor.mask_fcn_logits
    dst_mask = urban_model.roi_heads.mask_predictor.mask_fcn_logits
    for src, dst, index in (
        (src_box.cls_score, dst_box.cls_score, rows),
        (src_box.bbox_pred, dst_box.bbox_pred, box_rows),
        (src_mask, dst_mask, rows),
    ):
        dst.weight.copy_(src.weight[index])
        dst.bias.copy_(src.bias[index])
    return urban_model


def urban_log_probs(coco_logits: torch.Tensor) -> torch.Tensor:
    """COCO classifier logits [R, 91] -> log-probabilities [R, 9] in the course's classes.

    Each urban class gets the log of COCO's own softmax probability for its slot; background gets
    the log of everything else (COCO's background and its 73 other categories: for the course a
    dog or a chair is background); rider gets log 0, since COCO has no rider category and calls a
    rider "person". ``softmax`` of the result gives back exactly COCO's probabilities, so
    torchvision's post-processing (softmax, score threshold, per-class NMS) works unchanged.
    """
    log_p = coco_logits.log_softmax(-1)
    rows = coco_rows()
    urban = [rows[k] for k, name in enumerate(CLASSES) if name not in ("__background__", "rider")]
    others = torch.ones(coco_logits.shape[-1], dtype=torch.bool, device=coco_logits.device)
    others[urban] = False
    out = log_p[:, rows].clone()
    out[:, 0] = log_p[:, others].logsumexp(-1)
    out[:, CLASSES.index("rider")] = float("-inf")
    return out


class CocoUrbanBoxPredictor(nn.Module):
    """COCO's 91-slot box predictor answering in the course's classes (see :func:`urban_log_probs`).

    ``forward(x [R, D]) -> (log-probabilities [R, 9], box deltas [R, 36])``; the deltas are COCO's
    rows of each class (:func:`coco_rows`). ``self.coco`` is COCO's own predictor, untouched.
    """

    def __init__(self, coco: FastRCNNPredictor) -> None:
        super().__init__()
        self.coco = coco
        self.register_buffer("rows", torch.tensor(coco_rows()), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, deltas = self.coco(x)
        return urban_log_probs(logits), deltas.unflatten(1, (-1, 4))[:, self.rows].flatten(1)


class CocoUrbanMaskLogits(nn.Module):
    """COCO's 91-slot mask logits conv, keeping the channels of the course's classes:
    ``[R, M, 14, 14] -> [R, 9, 28, 28]`` after the predictor's upsampling. ``self.coco`` gives all 91."""

    def __init__(self, coco: nn.Conv2d) -> None:
        super().__init__()
        self.coco = coco
        self.register_buffer("rows", torch.tensor(coco_rows()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.coco(x)[:, self.rows]


def coco_zero_shot(coco_model: MaskRCNN) -> MaskRCNN:
    """The 91-slot ``coco_model`` predicting the course's classes with COCO's meaning, in place.

    For inference only: the scores are COCO's softmax, the boxes and masks COCO's rows of each
    class, and rider is never predicted (a COCO model cannot tell a rider from a person; fine-tuning
    on Cityscapes learns it, from :func:`transfer_coco_heads`' initialisation).
    """
    heads = coco_model.roi_heads
    if heads.box_predictor.cls_score.out_features != COCO_NUM_SLOTS:
        raise ValueError(f"expected a {COCO_NUM_SLOTS}-slot COCO model, got {heads.box_predictor.cls_score.out_features} classes")
    heads.box_predictor = CocoUrbanBoxPredictor(heads.box_predictor)
    heads.mask_predictor.mask_fcn_logits = CocoUrbanMaskLogits(heads.mask_predictor.mask_fcn_logits)
    return coco_model


def coco_fine_tuning(zero_shot: MaskRCNN) -> MaskRCNN:
    """A copy of a :func:`coco_zero_shot` model, ready to fine-tune: trainable 9-class heads filled
    by :func:`transfer_coco_heads` (rider from person; the zero-shot reading gives a rider target
    probability 0, i.e. an infinite classification loss)."""
    coco = copy.deepcopy(zero_shot)
    heads = coco.roi_heads
    heads.box_predictor = heads.box_predictor.coco
    heads.mask_predictor.mask_fcn_logits = heads.mask_predictor.mask_fcn_logits.coco
    return transfer_coco_heads(coco, replace_heads(copy.deepcopy(coco), NUM_CLASSES))
