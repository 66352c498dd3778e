"""Data-parallel training on torch.distributed: launch, process group, rank helpers, reductions.

`tunery train --nproc N` starts N local processes through torch's elastic launcher (the one behind
`torchrun`); `torchrun ... -m tunery train ...` starts them across nodes. Every process runs the
same loop (tunery/train/sft.py, dpo.py) on its share of each step's examples; the pieces here are the few
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


def sum_tensors(*tensors: torch.Tensor) -> None:
    """Add up tensors over all ranks, in place: e.g. each rank filled its own rows, zeros elsewhere."""
    if world_size() == 1:
        return
    for tensor in tensors:
        dist.all_reduce(tensor)


def gather_objects(obj: T) -> list[T]:
    """Every rank's `obj` (picklable), in rank order, on every rank."""
    if world_size() == 1:
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


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


# --- FSDP (distributed.strategy=fsdp): parameters, gradients and optimizer state sharded ---------
#
# With DDP (above) every rank holds the whole model and the gradients are summed after
# accumulation. With FSDP2 (`fully_shard`) each rank holds 1/N of every parameter, gradient and
# AdamW moment, and all-gathers a layer's parameters only while it computes that layer. The loop
# stays the same; these helpers are the differences:
#   - shard_model: one FSDP group per decoder layer, one for the rest (embeddings, final norm and
#     LM head, which may be tied); gradients reduce-scattered as a SUM, as `sum_gradients` does;
#   - same_batch_count: every forward pass runs collectives, so all ranks must run as many;
#   - clip_gradients: the norm of the sharded gradients is the global one;
#   - full_state / load_full_state: checkpoints hold the whole model and optimizer state as one
#     ordinary file each, the same files a one-process run writes and reads.


def shard_model(root) -> None:
    """Shard `root` (a `TokenLoss`) in place with FSDP2, layer by layer, before the optimizer exists.

    One group per decoder layer, and the root's group for the rest: embeddings, final norm and
    LM head, so a tied embedding/LM-head weight stays one parameter.
    """
    from torch.distributed.fsdp import FSDPModule, fully_shard

    from tunery.train.modeling import backbone_and_head

    body, _ = backbone_and_head(root.model)
    for layer in body.layers:
        fully_shard(layer)
    fully_shard(root)
    for module in root.modules():
        if isinstance(module, FSDPModule):
            # Each rank's loss is divided by the whole step's trained tokens: sum, don't average.
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # a plain SUM: gloo has no PREMUL_SUM


def same_batch_count(batches: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """Pad this rank's micro-batches with idle ones until every rank has as many (FSDP only).

    A sharded forward and backward all-gather and reduce-scatter with the other ranks, so a rank
    with fewer micro-batches (or none, in a short last step) would leave the others waiting. An
    idle micro-batch is one token with no target: it contributes nothing to loss or gradients.
    """
    count = torch.tensor([len(batches)])
    dist.all_reduce(count, op=dist.ReduceOp.MAX)
    device = batches[0]["input_ids"].device if batches else _device()
    idle = {k: torch.zeros(1, 1, dtype=torch.long, device=device) for k in ("input_ids", "position_ids", "loss_mask")}
    idle["segments"] = torch.zeros(1, 1, dtype=torch.long, device=device)
    return batches + [idle] * (int(count.item()) - len(batches))


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def clip_gradients(params: Sequence[torch.nn.Parameter], max_norm: float | None) -> float:
    """Clip the global gradient norm (over all ranks' shards when sharded) and return it."""
    from torch.distributed.tensor import DTensor

    norm = torch.nn.utils.clip_grad_norm_(params, max_norm or float("inf"))
    if isinstance(norm, DTensor):  # each rank's partial norm, combined over the ranks
        norm = norm.full_tensor()
    return norm.item()


def full_state(model, optimizer=None) -> tuple[dict | None, dict | None]:
    """The whole model's weights and the optimizer state as a one-process run keeps them.

    Sharded (FSDP): a collective that every rank must call; rank 0 gets CPU tensors, the others
    empty dicts. The optimizer state is indexed by parameter number like `optimizer.state_dict()`,
    so checkpoints load in any number of processes. Not sharded: (None, optimizer.state_dict()),
    the model saving its own weights.
    """
    if not is_sharded(model):
        return None, optimizer.state_dict() if optimizer is not None else None
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    for alias in _tied_aliases(model):  # gathered as separate copies; the files hold one, as HF saves it
        weights.pop(alias, None)
    if optimizer is None:
        return weights, None
    by_name = get_optimizer_state_dict(model, optimizer, options=options)
    return weights, _by_number(by_name) if is_main() else {}


def load_full_state(model, optimizer, weights: dict, optimizer_state: dict) -> None:
    """Load a checkpoint's whole weights and optimizer state into a sharded model (all ranks call it).

    Rank 0's copies are broadcast and each rank keeps its shard; the others may pass empty dicts.
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    weights = {
        **weights,
        **{alias: weights[source] for alias, source in _tied_aliases(model).items() if source in weights},
    }
    set_model_state_dict(model, weights if is_main() else {}, options=options)
    by_name = _by_name(optimizer_state, _parameter_names(model, optimizer)) if is_main() else {}
    set_optimizer_state_dict(model, optimizer, by_name, options=options)


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())


def _tied_aliases(model) -> dict[str, str]:
    """Second names of tied parameters (lm_head.weight → model.embed_tokens.weight)."""
    first: dict[int, str] = {}
    aliases = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases[name] = first[id(p)]
        first.setdefault(id(p), name)
    return aliases


def _parameter_names(model, optimizer) -> list[list[str]]:
    """Each optimizer group's parameters by name, in the optimizer's order."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]


def _by_number(state: dict) -> dict:
    """torch.distributed.checkpoint's optimizer state (keyed by parameter name) → torch's (by number)."""
    number = {}
    groups = []
    for group in state["param_groups"]:
        ids = [number.setdefault(name, len(number)) for name in group["params"]]
        groups.append({**group, "params": ids})
    return {"state": {number[n]: s for n, s in state["state"].items()}, "param_groups": groups}


def _by_name(state: dict, names: list[list[str]]) -> dict:
    """The inverse of `_by_number`, given each group's parameter names in the optimizer's order."""
    groups = [{**group, "params": group_names} for group, group_names in zip(state["param_groups"], names, strict=True)]
    flat = [n for group_names in names for n in group_names]
    return {"state": {flat[i]: s for i, s in state["state"].items()}, "param_groups": groups}
