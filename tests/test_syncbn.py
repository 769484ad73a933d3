"""BatchNorm under data parallelism: two processes on halves of every batch keep the statistics of one on all of it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from course_lib.engine import distributed, trainer
from course_lib.engine.settings import TrainSettings
from test_distributed import Colours


class NormalisedRegression(nn.Module):
    """``ColourRegression`` with a BatchNorm on its input: its running statistics show which batch it saw."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.norm = nn.BatchNorm1d(3)
        self.fit = nn.Linear(3, 1)

    def forward(self, images, targets):
        features = self.norm(torch.stack([image.mean(dim=(1, 2)) for image in images]))
        labels = torch.cat([target["labels"] for target in targets])
        return {"loss_fit": ((self.fit(features)[:, 0] - labels) ** 2).mean()}


SETTINGS = TrainSettings(steps=4, batch_size=4, lr=0.05, optimizer="sgd", warmup_steps=1, amp="off")


def _train_and_save(out: Path, device: str) -> None:
    model = NormalisedRegression()
    trainer.train(model, Colours(), SETTINGS, device=torch.device(device), progress=False)
    if distributed.rank_and_world()[0] == 0:
        torch.save({"state": {k: v.cpu() for k, v in model.state_dict().items()}, "norm": type(model.norm).__name__},
                   out / "two.pt")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP runs SyncBatchNorm on GPUs only: one per process, over NCCL")
def test_two_gpu_processes_keep_the_whole_batchs_batchnorm_statistics(tmp_path):
    distributed.launch(_train_and_save, tmp_path, "cuda", processes=2)
    alone = NormalisedRegression()
    trainer.train(alone, Colours(), SETTINGS, device=torch.device("cuda"), progress=False)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    assert two["norm"] == "SyncBatchNorm"
    for key in ("norm.running_mean", "norm.running_var", "fit.weight"):
        torch.testing.assert_close(two["state"][key], alone.state_dict()[key].cpu(), rtol=1e-4, atol=1e-5)


def test_batchnorm_in_cpu_processes_is_refused_in_one_line(tmp_path):
    with pytest.raises(Exception, match="trainable BatchNorm, whose statistics CPU processes cannot share"):
        distributed.launch(_train_and_save, tmp_path, "cpu", processes=2)
    assert not (tmp_path / "two.pt").exists()


def test_outside_a_process_group_nothing_changes():
    model = NormalisedRegression()
    assert distributed.data_parallel(model) is model and type(model.norm) is nn.BatchNorm1d


def test_frozen_batchnorm_and_groupnorm_are_left_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), FrozenBatchNorm2d(4), nn.GroupNorm(2, 4), nn.Sequential(nn.BatchNorm2d(4)))
    converted = distributed.sync_batchnorm(model)
    assert converted is model
    assert [type(m) for m in model] == [nn.Conv2d, FrozenBatchNorm2d, nn.GroupNorm, nn.Sequential]
    assert isinstance(model[3][0], nn.SyncBatchNorm)


def test_r50_fpn_v2_normalises_with_batchnorm_everywhere_and_all_of_it_is_synchronised():
    from course_lib.modeling.maskrcnn import build

    model = build("r50_fpn_v2")
    parts = {"backbone.body": model.backbone.body, "backbone.fpn": model.backbone.fpn, "roi_heads": model.roi_heads}
    assert all(any(isinstance(m, nn.BatchNorm2d) for m in part.modules()) for part in parts.values())
    distributed.sync_batchnorm(model)
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules()) > 50
