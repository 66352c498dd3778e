"""Data-parallel training on torch.distributed: launch, process group, rank helpers, reductions.

`tunery train --nproc N` starts N local processes through torch's elastic launcher (the one behind
`torchrun`); `torchrun ... -m tunery train ...` starts them across nodes. Every process runs the
same loop (tunery/train/sft.py) on its share of each step's examples; the pieces here are the few
collective operations that loop needs. With one process every helper is the identity and no
collective runs, so single-process training is unchanged bit for bit.

Backends: gloo for CPU tensors, NCCL for CUDA tensors (one process per GPU, LOCAL_RANK = GPU index).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

# Seconds the launcher waits after forwarding SIGTERM/SIGINT before it SIGKILLs the workers: the
# time a worker has to finish its step and write the checkpoint (torch's own default is 30 s).
SHUTDOWN_GRACE_S = 300


def launched() -> bool:
    """True inside a process started by torchrun / `--nproc` (the launcher sets WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0 writes metrics, status, checkpoints and the final model; the others only train.

    Also right before and after the process group exists (the launcher's RANK says).
    """
    rank = dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))
    return rank == 0


def local_world_size() -> int:
    """Processes on this machine: they share its cores."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """Join the process group the launcher set up (env:// rendezvous), and leave it at the end.

    Outside a multi-process launch this does nothing.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield
        return
    _die_with_launcher()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        backend = "cpu:gloo,cuda:nccl"  # the step's scalars may live on the CPU, the gradients on the GPU
    else:
        backend = "gloo"
    dist.init_process_group(backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _die_with_launcher() -> None:
    """Ask Linux to SIGKILL this worker when its launcher dies.

    The elastic launcher starts each worker in its own session, so a SIGKILL of the launcher's
    process group would otherwise leave orphaned workers training (and writing the run directory)
    while the user resumes it.
    """
    if not sys.platform.startswith("linux") or "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    launcher = os.environ.get("TUNERY_LAUNCHER_PID")
    if launcher is not None and os.getppid() != int(launcher):  # it died before prctl took effect
        os._exit(1)


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of a step's examples: every world_size-th one, starting at its rank.

    The step's examples are chosen exactly as in a one-process run, so N processes train on the
    same global batch; interleaving keeps the shares' lengths balanced.
    """
    if world_size() == 1:
        return list(items)
    return list(items[dist.get_rank() :: world_size()])


def all_sum(*values: float) -> tuple[float, ...]:
    """Sum a few scalars over all ranks (float64, so token counts stay exact)."""
    if world_size() == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tuple(tensor.tolist())


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any: ranks must agree, e.g. to stop after a signal."""
    if world_size() == 1:
        return flag
    tensor = torch.tensor([int(flag)])
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def sum_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Add up the accumulated gradients of all ranks, in place.

    Each rank's loss is already divided by the trained tokens of the whole step over all ranks,
    so the sum is the gradient of the global batch. A rank that had no examples this step
    contributes zeros.
    """
    if world_size() == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    pending = [dist.all_reduce(p.grad, async_op=True) for p in params]
    for work in pending:
        work.wait()


def broadcast_parameters(params: Sequence[torch.nn.Parameter]) -> None:
    """Start every rank from rank 0's weights (the ones a checkpoint holds)."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=0)


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def launch(nproc: int, argv: list[str], run_dir: Path) -> int:
    """Run `python -m tunery *argv` in `nproc` local processes and return the exit code.

    This is `torchrun --standalone --nproc-per-node N -m tunery ...` called as a library, with
    no restarts (a failed step fails the run; `--resume` continues it). A SIGTERM/SIGINT to the
    launcher is forwarded to the workers, which finish their step and checkpoint.
    """
    import uuid

    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from tunery.train.rundir import RunDir

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port on loopback
        max_restarts=0,
        monitor_interval=0.2,
        shutdown_timeout=SHUTDOWN_GRACE_S,
    )
    os.environ["TUNERY_LAUNCHER_PID"] = str(os.getpid())  # inherited by the workers, see _die_with_launcher
    try:
        elastic_launch(config, sys.executable)("-m", "tunery", *argv)
    except ChildFailedError as exc:
        codes = [f.exitcode for f in exc.failures.values()]
        return next((c for c in codes if c > 0), 1)  # the workers printed their own error
    except SignalException:
        status = RunDir(run_dir).read_status() or {}
        return 0 if status.get("state") == "interrupted" else 1
    return 0
