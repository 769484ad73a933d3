"""One-to-one matching of two sets by the Hungarian algorithm: the one matcher of the library.

Evaluation pairs predictions with targets, the tracker pairs tracks with detections, the track
metrics pair ground-truth objects with predicted ones, and the deployment checks pair a variant's
detections with the baseline's. Each is "the one-to-one assignment with the largest total
similarity, then drop the pairs below a gate", so each calls :func:`match_pairs`.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def match_pairs(similarity: np.ndarray | torch.Tensor, threshold: float = -np.inf) -> list[tuple[int, int]]:
    """One-to-one ``(row, col)`` pairs maximising the total ``similarity``, each pair >= ``threshold``.

    ``similarity`` [R, C] (e.g. IoU of R predictions with C targets; a cost negated). scipy's
    ``linear_sum_assignment`` finds the best global assignment of min(R, C) pairs, not the greedy
    best-pair-first one; pairs whose similarity is under ``threshold`` (the gate) are then dropped,
    so both of their sides count as unmatched. Pairs come in increasing row order.
    """
    similarity = similarity.numpy() if isinstance(similarity, torch.Tensor) else np.asarray(similarity)
    if similarity.size == 0:
        return []
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if similarity[r, c] >= threshold]


def same_class(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """[N] and [K] class ids -> bool [N, K]: which pairs may be matched at all."""
    return torch.as_tensor(labels_a).reshape(-1, 1) == torch.as_tensor(labels_b).reshape(1, -1)


def gate_by_class(similarity: torch.Tensor, labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """``similarity`` [N, K] (an IoU matrix) with every pair of different classes set to 0: a new tensor.

    Detections of one class are matched only to objects of that class: with a positive gate,
    :func:`match_pairs` never keeps such a pair.
    """
    similarity = torch.as_tensor(similarity)
    return similarity * same_class(labels_a, labels_b).to(similarity.device, similarity.dtype)
