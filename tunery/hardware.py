"""What this machine's CPU offers, and how tunery's processes share it.

* Threads: the physical cores this process may run on, shared out between the training processes
  of one machine (hyperthreads only slow dense matmuls), or OMP_NUM_THREADS when the user set it.
* OpenMP's wait policy: by default, OpenMP threads spin for a while at every barrier before they
  sleep. On a machine whose cores are busy with other work, a spinning thread burns the time slice
  its partner needs to reach the barrier, and a training step slows far more than sharing the cores
  explains; bench/shared_cpu.py measures both policies alone and beside a competing process.
  The policy is read once, when torch loads OpenMP, so it is set before torch is imported.
* Native bf16: CPUs with AVX512-BF16 or AMX compute bf16 matmuls in hardware, where bf16 autocast
  is about 1.3-1.6x faster than fp32. Elsewhere bf16 is emulated, and slower than fp32.
"""

from __future__ import annotations

import os
from pathlib import Path

OPENMP_WAIT_POLICY = "PASSIVE"


def wait_passively() -> None:
    """Make OpenMP threads sleep, not spin, at barriers, unless the user chose otherwise.

    Has an effect only before torch is first imported in this process; child processes inherit it.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", OPENMP_WAIT_POLICY)


def threads_reason() -> str:
    policy = os.environ.get("OMP_WAIT_POLICY", "")
    if policy.upper() == OPENMP_WAIT_POLICY:
        waiting = "OpenMP threads wait passively, so other work on these cores does not stall each step"
    else:
        waiting = f"OMP_WAIT_POLICY={policy or 'unset'}: spinning threads slow sharply when the cores are shared"
    if os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        return f"OMP_NUM_THREADS per process; {waiting}"
    return f"physical cores shared between this machine's training processes; {waiting}"


def physical_cores() -> int:
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except ImportError:
        cores = None
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or available or 1, available or 1))


def cpu_threads(processes: int = 1) -> int:
    """Torch threads for each of `processes` training processes on this machine.

    OMP_NUM_THREADS, when set, is taken as it is meant: threads per process. Otherwise the
    physical cores this process may run on are shared out.
    """
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, physical_cores() // processes)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The CPU's feature flags, or None where the OS does not list them."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def cpu_native_bf16(flags: set[str] | None = None) -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX).

    torch's own check (oneDNN's) also answers yes on plain AVX512, where bf16 is emulated; so
    where the OS lists the CPU's flags, they decide, and torch's check is the fallback.
    """
    flags = cpu_flags() if flags is None else flags
    if flags is not None:
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
