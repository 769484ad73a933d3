"""course_lib.data.sampling: the epoch shuffle and LVIS repeat-factor sampling."""

import math

import pytest
import torch

from course_lib.data import sampling
from course_lib.data.toycity import ToyCityDataset


def test_repeat_factors_follow_the_lvis_formula():
    label_sets = [{1}, {1, 3}, {1}, set(), {1, 6}, {1, 6, 3}, {1}, {1}]
    fractions = sampling.class_image_fractions(label_sets)
    assert fractions == {1: 7 / 8, 3: 2 / 8, 6: 2 / 8}
    factors = sampling.repeat_factors(label_sets, threshold=0.5)
    rare = math.sqrt(0.5 / 0.25)  # classes 3 and 6: below the threshold
    assert factors.tolist() == pytest.approx([1, rare, 1, 1, rare, rare, 1, 1])  # an empty image keeps 1
    # a threshold below every class's fraction leaves sampling uniform
    assert sampling.repeat_factors(label_sets, threshold=0.2).tolist() == [1.0] * 8
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        sampling.repeat_factors(label_sets, threshold=0)


def test_plain_epoch_order_is_the_seeded_permutation():
    # the order the committed ToyCity model was trained with: keep it, or its command stops reproducing it
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(3 * 100_003 + 2)).tolist()
    assert sampling.epoch_order(3, 2, 10) == expected
    per_epoch = [i for step in range(5) for i in sampling.batch_indices(step, batch_size=2, dataset_length=10, seed=0)]
    assert sorted(per_epoch) == list(range(10))
    assert sampling.batch_indices(5, batch_size=2, dataset_length=10, seed=0) != sampling.batch_indices(0, batch_size=2, dataset_length=10, seed=0)


def test_whole_factors_repeat_each_item_exactly():
    order = sampling.epoch_order(0, 0, 3, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert sorted(order) == [0, 1, 1, 2, 2, 2]


def test_fractional_factors_are_met_on_average():
    factors = torch.tensor([1.0, 1.25, 2.5], dtype=torch.float64)
    counts = torch.zeros(3)
    epochs = 2000
    for epoch in range(epochs):
        counts += torch.bincount(torch.tensor(sampling.epoch_order(0, epoch, 3, factors)), minlength=3)
    assert (counts / epochs).tolist() == pytest.approx(factors.tolist(), abs=0.05)
    lengths = {len(sampling.epoch_order(0, epoch, 3, factors)) for epoch in range(20)}
    assert lengths <= {4, 5, 6} and len(lengths) > 1  # the epoch's length varies with the rounding


def test_batches_run_on_across_epochs_of_varying_length():
    factors = torch.tensor([1.0, 1.5, 2.7, 1.0], dtype=torch.float64)
    plan = sampling.batch_plan(0, 12, batch_size=3, dataset_length=4, seed=1, factors=factors)
    stream = [i for epoch in range(12) for i in sampling.epoch_order(1, epoch, 4, factors)]
    assert [i for batch in plan for i in batch] == stream[:36]  # 36 samples cross several epoch boundaries
    # any step's batch is a pure function of (seed, step): a resumed run starts mid-stream
    assert sampling.batch_plan(5, 12, batch_size=3, dataset_length=4, seed=1, factors=factors) == plan[5:]
    assert [sampling.batch_indices(s, batch_size=3, dataset_length=4, seed=1, factors=factors) for s in range(12)] == plan
    with pytest.raises(ValueError, match="one repeat factor per dataset item"):
        sampling.batch_plan(0, 1, batch_size=3, dataset_length=5, seed=1, factors=factors)


def test_toycity_image_labels_are_its_target_labels():
    dataset = ToyCityDataset(3, seed=5, height=64, width=128)
    assert [dataset.image_labels(i) for i in range(3)] == [dataset[i][1]["labels"].tolist() for i in range(3)]
    label_sets = sampling.dataset_label_sets(dataset, progress=False)
    assert sampling.dataset_repeat_factors(dataset, 0.5, progress=False).tolist() == sampling.repeat_factors(label_sets, 0.5).tolist()


def test_a_dataset_without_image_labels_is_named():
    with pytest.raises(TypeError, match="list has no image_labels"):
        sampling.dataset_label_sets([1, 2, 3])
