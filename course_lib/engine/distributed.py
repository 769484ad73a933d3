"""Data-parallel training in several processes: one per GPU, or per CPU core.

With several GPUs, the standard way to train a detector is one process per GPU, each on its
share of every batch, under ``torch.nn.parallel.DistributedDataParallel`` (DDP): in the backward
pass DDP averages the gradients over the processes, so every process takes the same optimizer
step and the weights stay identical (detectron2 and torchvision's references train Mask R-CNN
on 8 GPUs this way).

    launch(worker, processes=2)   # runs worker(*args) in 2 processes, ranks 0 and 1
    rank, world = rank_and_world()          # inside: (0, 2) and (1, 2); (0, 1) without launch
    train(model, dataset, batch_size=4, ...)   # each rank loads and runs 2 of the 4 images

On a CPU the same recipe can replace threads by processes: two 1-thread processes, each on half
of every batch, never share an op, where one process's second thread only helps inside each op
(a step is hundreds of small ops, dispatched one after the other from Python). But under DDP the
processes meet at every step: the 22 MB of gradients are averaged (~20 ms on this course's
2-core machine), and the process whose images hold more RoIs sets the pace. Measured there, the
two ways end up about even (``python -m course_lib bench --train-step``; ~4 % in whole runs):
``launch`` is for machines with several GPUs, or many cores.

The ToyCity model normalises with GroupNorm (statistics per image), so splitting a batch changes
nothing there. BatchNorm (trainable in torchvision's ``maskrcnn_resnet50_fpn_v2``: backbone, FPN
and heads) normalises with the statistics of the batch in hand: in ``N`` processes each would see
``1/N`` of the batch, so :func:`data_parallel` turns it into ``SyncBatchNorm``, which computes them
over all processes' images. Each process computes its losses as the
mean over its own RoIs, so the averaged gradient is the mean of per-half means, not exactly the
mean over the whole batch's RoIs (equal when both halves sample as many).
"""

from __future__ import annotations

import ctypes
import signal
import socket
import sys
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from course_lib.errors import BadInput

#: Layers that normalise with the statistics of the batch in hand.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exit_with_parent() -> None:
    """On Linux, have the kernel stop this process when the launcher dies, rather than leave it
    training on its own. torch's ``spawn`` asks for SIGINT, which a run started in the background
    (``nohup``, ``&``) ignores: killing its launcher left both workers running. SIGTERM is not ignored."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _worker(rank: int, world: int, address: str, threads: int, fn: Callable[..., Any], args: tuple) -> None:
    _exit_with_parent()
    torch.set_num_threads(threads)
    backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= world else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=address, rank=rank, world_size=world)
    try:
        fn(*args)
        # Every process gets here before any tears the group down: with torch 2.5, a process whose
        # partner had already left destroy_process_group and exited hung in it for good.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def launch(fn: Callable[..., Any], *args: Any, processes: int = 2, threads_per_process: int = 1) -> None:
    """Run ``fn(*args)`` in ``processes`` processes joined in one process group (loopback only).

    ``fn`` and ``args`` must be picklable (a module-level function). Rank 0 should write the
    results; an exception in any process is raised here. ``processes=1`` simply calls ``fn``.
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if processes == 1:
        torch.set_num_threads(threads_per_process)
        fn(*args)
        return
    address = f"tcp://127.0.0.1:{_free_port()}"
    torch.multiprocessing.spawn(_worker, args=(processes, address, threads_per_process, fn, args), nprocs=processes)


def data_parallel(model: nn.Module) -> nn.Module:
    """``model`` ready to train in this process group: the model itself outside one; otherwise its
    BatchNorm layers replaced (in place) by ``SyncBatchNorm`` and the whole wrapped in DDP.

    Without the conversion, 8 processes on a batch of 8 would each normalise one image by its own
    statistics and average eight one-image running statistics, a different model from the one
    trained on the batch. ``FrozenBatchNorm2d`` and GroupNorm have no batch statistics and stay.
    DDP runs ``SyncBatchNorm`` on GPUs only: a BatchNorm model in CPU processes is refused.
    """
    if rank_and_world()[1] == 1:
        return model
    if any(isinstance(m, BATCH_NORMS) for m in model.modules()) and next(model.parameters()).device.type != "cuda":
        raise BadInput("this model has trainable BatchNorm, whose statistics CPU processes cannot share (SyncBatchNorm "
                       "needs GPUs): train it with --processes 1, or on one GPU per process")
    return nn.parallel.DistributedDataParallel(sync_batchnorm(model))


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm layer below its root replaced by ``SyncBatchNorm``, in place
    (so that the caller's reference holds the converted layers); other layers are untouched."""
    for name, module in list(model.named_children()):
        setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(module))
    return model


def all_mean(values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``values`` over all processes (itself outside a process group)."""
    _, world = rank_and_world()
    if world == 1:
        return values
    total = values.detach().clone()
    dist.all_reduce(total)  # SUM: gloo has no AVG
    return total / world


def gather(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process (``[obj]`` outside a process group)."""
    _, world = rank_and_world()
    if world == 1:
        return [obj]
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    """Wait until every process gets here (no-op outside a process group)."""
    if rank_and_world()[1] > 1:
        dist.barrier()
