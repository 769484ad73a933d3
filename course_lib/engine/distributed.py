"""Data-parallel training in several processes: one per GPU, or per CPU core.

With several GPUs, the standard way to train a detector is one process per GPU, each on its
share of every batch, under ``torch.nn.parallel.DistributedDataParallel`` (DDP): in the backward
pass DDP averages the gradients over the processes, so every process takes the same optimizer
step and the weights stay identical (detectron2 and torchvision's references train Mask R-CNN
on 8 GPUs this way).

    torchrun --nnodes 2 --nproc_per_node 4 ... -m course_lib train ...   # 8 processes on 2 machines
    launch(worker, processes=2)   # runs worker(*args) in 2 processes here, ranks 0 and 1; under torchrun, in this one
    rank, world = rank_and_world()          # inside: (0, 2) and (1, 2); (0, 1) without launch
    train(model, dataset, TrainSettings(batch_size=4, ...))   # each rank loads and runs 2 of the 4 images

The processes meet the way ``torchrun`` (PyTorch's launcher, which also spans machines) arranges: each
reads its place from ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (its GPU), ``MASTER_ADDR`` and ``MASTER_PORT``
(:func:`course_lib.environment.process_place`) and joins with ``init_method="env://"``, NCCL between GPUs
and gloo between CPU processes. ``launch(processes=N)`` is the one-machine shortcut: it starts ``N``
workers that set those variables themselves and then take the same path.

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

import contextlib
import ctypes
import signal
import socket
import sys
import threading
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from course_lib import environment
from course_lib.errors import BadInput, DeviceUnavailable

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


def launch(fn: Callable[..., Any], *args: Any, processes: int = 1, threads_per_process: int = 1) -> None:
    """Run ``fn(*args)`` in every training process, joined in one process group.

    * Under ``torchrun`` (its variables set, :func:`course_lib.environment.process_place`): in this process,
      one of the group torchrun started, on this machine or across several.
    * ``processes > 1``: in that many processes started here (loopback), each given the variables torchrun
      would give, then on the same path. ``fn`` and ``args`` must be picklable (a module-level function).
    * Otherwise ``fn(*args)`` in this process alone.

    Rank 0 should write the results; an exception in any process is raised here.
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    place = environment.process_place()
    if place is not None and processes > 1:
        raise BadInput(f"--processes {processes} under torchrun, which starts the processes itself: leave out --processes "
                       "(torchrun --nproc_per_node sets how many per machine)")
    if place is None and processes == 1:
        torch.set_num_threads(threads_per_process)
        fn(*args)
    elif place is not None:
        _run_in_group(fn, args)
    else:
        _spawn(fn, args, processes, threads_per_process)


def _spawn(fn: Callable[..., Any], args: tuple, processes: int, threads: int) -> None:
    """``processes`` workers on this machine (:func:`_spawned`); raise :class:`TrainingInterrupted` with rank 0's
    message if Ctrl-C stopped them."""
    stops = torch.multiprocessing.get_context("spawn").SimpleQueue()
    # A terminal's Ctrl-C reaches every process of the foreground group: the workers finish their step and save;
    # this process waits for them (a second Ctrl-C stops it, and with it the workers).
    with ctrl_c_deferred():
        torch.multiprocessing.spawn(_spawned, args=(processes, _free_port(), threads, fn, args, stops), nprocs=processes)
    if not stops.empty():
        raise TrainingInterrupted(stops.get())


def _spawned(rank: int, world: int, port: int, threads: int, fn: Callable[..., Any], args: tuple, stops: Any) -> None:
    """A worker of ``launch(processes=world)``: placed as torchrun would place it, then :func:`_run_in_group`.
    A Ctrl-C stop is passed to the launcher through ``stops`` (a queue) by rank 0, and ends the worker cleanly."""
    _exit_with_parent()
    torch.set_num_threads(threads)
    environment.set_process_place(environment.ProcessPlace(rank, world, rank, "127.0.0.1", port))
    try:
        _run_in_group(fn, args)
    except TrainingInterrupted as stop:
        if rank == 0:
            stops.put(str(stop))


def _run_in_group(fn: Callable[..., Any], args: tuple) -> None:
    """Join the group the launcher variables describe (``env://``: gloo on CPUs, NCCL on GPUs), run ``fn(*args)``, leave."""
    place = environment.process_place()
    if place.world_size == 1:
        fn(*args)
        return
    device = process_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://",
                                rank=place.rank, world_size=place.world_size)
    except (RuntimeError, ValueError) as error:  # torch's DistNetworkError and DistStoreError are RuntimeErrors
        reason = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise BadInput(f"rank {place.rank} of {place.world_size} could not meet the other training processes at "
                       f"{place.master_addr}:{place.master_port} ({reason}): give every machine rank 0's reachable "
                       "address and a free port (torchrun --rdzv-endpoint or MASTER_ADDR/MASTER_PORT)") from None
    try:
        fn(*args)
        # Every process gets here before any tears the group down: with torch 2.5, a process whose
        # partner had already left destroy_process_group and exited hung in it for good.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def process_device() -> torch.device:
    """The device this process trains on: ``cuda:LOCAL_RANK`` (its own GPU) in a process group on GPUs, else
    :func:`course_lib.environment.device`."""
    chosen, place = environment.device(), environment.process_place()
    if chosen.type != "cuda" or place is None or place.world_size == 1:
        return chosen
    if place.local_rank >= torch.cuda.device_count():
        raise DeviceUnavailable(f"LOCAL_RANK={place.local_rank} but this machine has {torch.cuda.device_count()} GPU(s): "
                                "start at most one training process per GPU (torchrun --nproc_per_node)")
    return torch.device("cuda", place.local_rank)


def writes_outputs() -> bool:
    """Whether this process writes the run's files, before any group is joined: rank 0 of a torchrun launch,
    or a process that torchrun did not start (it launches its own ``--processes`` and holds the folder for them)."""
    place = environment.process_place()
    return place is None or place.rank == 0


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run at the end of a step; the message names the checkpoint saved there."""


@contextlib.contextmanager
def ctrl_c_deferred() -> Iterator[threading.Event]:
    """Turn Ctrl-C (SIGINT) into an event, checked after each training step: a half-done step (weights
    updated, schedule not yet) cannot be saved consistently. A second Ctrl-C stops at once.

    Only in the main thread (where Python delivers signals); elsewhere Ctrl-C raises ``KeyboardInterrupt`` as usual.
    """
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return

    def on_ctrl_c(signum: int, frame: object) -> None:
        if pressed.is_set():
            raise KeyboardInterrupt
        pressed.set()

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_requested(pressed: threading.Event, device: torch.device) -> bool:
    """Whether Ctrl-C reached any process (each at its own moment): every process then stops at the same step."""
    return bool(all_mean(torch.tensor([float(pressed.is_set())], device=device)).item() > 0)


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
