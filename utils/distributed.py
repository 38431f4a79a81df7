"""Data-parallel training under ``torchrun``: the few helpers the trainer and the sweep share (issue 17).

One process per GPU (or several on a CPU) each hold a full copy of the model. Every step, each
process takes its own share of the *global* batch, computes its gradient, and PyTorch's
``DistributedDataParallel`` (DDP) averages the gradients over all processes during the backward
pass, so every copy takes the same optimiser step. With the loss weighted by each share's tokens
(``utils.train.Trainer`` does this), the averaged gradient is the single-process gradient of the
same global batch, up to the order of float additions: the loss curve is the same (tested on the
CPU with 2 processes in ``tests/test_distributed.py``).

``torchrun`` starts the processes and tells each one who it is through environment variables:
``RANK`` (0 .. WORLD_SIZE-1 over all machines), ``LOCAL_RANK`` (which GPU of its machine) and
``WORLD_SIZE`` (how many processes in all). Without them the code runs as one ordinary process,
exactly as before. The commands, one per setting (the scaling sweep of chapter 11 as example):

    python -m utils.scaling --big                                           # one GPU (or the CPU)
    torchrun --standalone --nproc_per_node=N -m utils.scaling --big         # N GPUs on one machine
    torchrun --nnodes=M --nproc_per_node=N --rdzv_id=sweep --rdzv_backend=c10d \\
             --rdzv_endpoint=HOST:PORT -m utils.scaling --big               # M machines of N GPUs:
                                                                            # run it on every machine
    torchrun --standalone --nproc_per_node=2 -m utils.scaling --widths 16 --steps 20 \\
             --out /tmp/sweep.json                                          # 2 CPU processes (gloo)

HOST:PORT is any one of the machines (all must reach it; e.g. node1:29400). Backends: NCCL
between GPUs, gloo between CPU processes. The global batch (``batch_size``) must be a multiple
of WORLD_SIZE; each process takes a contiguous block of ``batch_size / WORLD_SIZE`` rows.

    with distributed.launched("cuda") as ctx:   # ctx.rank, ctx.world_size, ctx.device, ctx.is_main
        trainer = Trainer(model.to(ctx.device), config, get_batch)   # wraps the model in DDP itself
        trainer.fit(progress=ctx.is_main); trainer.save("ckpt.pt")   # only rank 0 writes

Modelled on the DDP setup of nanoGPT's ``train.py`` (github.com/karpathy/nanoGPT), written for this course.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from .validation import check_choice, check_int

__all__ = ["DistContext", "torchrun_env", "is_distributed", "rank", "world_size", "is_main", "init", "cleanup",
           "launched", "check_global_batch", "shard"]


@dataclass(frozen=True)
class DistContext:
    """Who this process is: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine, its device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and prints; the others only compute."""
        return self.rank == 0


def _env_int(name: str, minimum: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        raise ValueError(f"the environment variable {name} is missing, but RANK is set: start the processes "
                         "with torchrun, which sets RANK, LOCAL_RANK and WORLD_SIZE together")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"the environment variable {name} must be an integer >= {minimum}, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"the environment variable {name} must be an integer >= {minimum}, got {raw!r}")
    return value


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, local_rank, world_size) from torchrun's environment variables, or None outside torchrun."""
    if "RANK" not in os.environ:
        return None
    world = _env_int("WORLD_SIZE", 1)
    rank_ = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    if rank_ >= world:
        raise ValueError(f"the environment variable RANK must be in [0, WORLD_SIZE - 1 = {world - 1}], got {rank_}")
    return rank_, local, world


def is_distributed() -> bool:
    """True when a process group is running with more than one process (the trainer then uses DDP)."""
    return _group_running() and torch.distributed.get_world_size() > 1


def _group_running() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return torch.distributed.get_rank() if _group_running() else 0


def world_size() -> int:
    """The number of processes (1 outside a process group)."""
    return torch.distributed.get_world_size() if _group_running() else 1


def is_main() -> bool:
    """Whether this process writes results and prints: rank 0, or the only process."""
    return rank() == 0


def init(device: str | torch.device | None = None) -> DistContext:
    """Join torchrun's process group if started by torchrun; return who this process is.

    ``device`` is "cpu", "cuda" or None (a GPU if there is one). Under torchrun a CUDA device
    becomes ``cuda:LOCAL_RANK`` with the NCCL backend; the CPU uses gloo (Apple's "mps" has no
    backend here). Outside torchrun nothing is initialised and the context is rank 0 of 1 on
    ``device`` ("mps" allowed). Calling it again is harmless.
    """
    if isinstance(device, torch.device):
        device = device.type
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    env = torchrun_env()
    kind = check_choice(device, "device", ("cpu", "cuda") if env else ("cpu", "cuda", "mps"))
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' asks for a CUDA GPU, but PyTorch sees none; use 'cpu'")
    if env is None:
        return DistContext(0, 0, 1, torch.device(kind))
    rank_, local, world = env
    if kind == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK is {local} but this machine has {torch.cuda.device_count()} GPU(s); "
                             "--nproc_per_node must be at most the number of GPUs")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if kind == "cuda" else "gloo")
    return DistContext(rank_, local, world, dev)


def cleanup() -> None:
    """Leave the process group (``destroy_process_group``); a no-op when there is none."""
    if _group_running():
        torch.distributed.destroy_process_group()


@contextlib.contextmanager
def launched(device: str | torch.device | None = None):
    """``with launched("cpu") as ctx:`` runs ``init``, and ``cleanup`` at the end if it started the group.

    Nested use (the sweep's ``_main`` called inside a script that already joined) leaves the
    outer group running.
    """
    started = not _group_running()
    ctx = init(device)
    try:
        yield ctx
    finally:
        if started:
            cleanup()


def check_global_batch(batch_size: int, world: int | None = None, name: str = "batch_size") -> int:
    """The rows each process takes: ``batch_size / world`` (``world`` defaults to the running world size).

    A global batch that does not split evenly would give the processes unequal shares (and a
    different batch from the single-process run), so it is an error.
    """
    world = world_size() if world is None else check_int(world, "world", minimum=1)
    batch_size = check_int(batch_size, name, minimum=1)
    if batch_size % world:
        raise ValueError(f"{name} (the global batch) must be a multiple of the world size {world}, got {batch_size}; "
                         f"each of the {world} processes takes an equal share of its rows")
    return batch_size // world


def shard(batch: torch.Tensor, index: int | None = None, world: int | None = None) -> torch.Tensor:
    """Rank ``index``'s rows of a global batch: the block ``[index * B/world, (index + 1) * B/world)``.

    The blocks of all ranks, in rank order, are the whole batch, so data-parallel training sees
    exactly the single-process batches. ``index`` and ``world`` default to this process's rank and
    the world size.
    """
    world = world_size() if world is None else check_int(world, "world", minimum=1)
    index = rank() if index is None else check_int(index, "index", minimum=0, maximum=world - 1)
    if not isinstance(batch, torch.Tensor) or batch.dim() < 1:
        raise ValueError(f"batch must be a tensor with a batch dimension, got {type(batch).__name__}")
    n = check_global_batch(batch.shape[0], world, name="the batch's number of rows")
    return batch[index * n:(index + 1) * n]
