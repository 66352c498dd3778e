"""Benchmark: training throughput when another CPU-bound process shares the cores, per OpenMP wait policy.

Runs bench/train_throughput.py's tunery side (LoRA on SmolLM2-135M, same data and steps) four times:
OpenMP threads that spin at barriers (OMP_WAIT_POLICY=ACTIVE) or sleep (PASSIVE, tunery's default),
each on the cores alone and beside one competing CPU-bound process. Reports seconds per step and the
busy/quiet ratio per policy (target: at least 0.4× the quiet throughput with one competitor).

    .venv/bin/python bench/shared_cpu.py                 # ~5-10 min on 2 idle cores
    .venv/bin/python bench/shared_cpu.py --steps 3

The competitor is a pure-Python busy loop, one process, started before and stopped after each busy run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from sides import machine

HERE = Path(__file__).resolve().parent


def run(policy: str, competitor: bool, steps: int, workdir: Path) -> dict:
    out = workdir / f"{policy}-{'busy' if competitor else 'quiet'}.json"
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if competitor else None
    try:
        subprocess.run(
            [
                sys.executable,
                str(HERE / "train_throughput.py"),
                "--sides",
                "tunery",
                "--steps",
                str(steps),
                "--json",
                str(out),
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    finally:
        if busy:
            busy.kill()
            busy.wait()
    row = json.loads(out.read_text())["runs"]["tunery"][0]
    return {
        "policy": policy,
        "competitor": competitor,
        **{k: row[k] for k in ("s_per_step", "tokens_per_s", "load_average")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2, help="timed optimizer steps per run")
    args = parser.parse_args()
    print(f"{machine()}, load average {os.getloadavg()[0]:.1f}, {date.today()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tunery-shared-cpu-") as tmp:
        for policy in ("ACTIVE", "PASSIVE"):
            for competitor in (False, True):
                rows.append(run(policy, competitor, args.steps, Path(tmp)))
                r = rows[-1]
                print(
                    f"  {policy:7} {'+1 busy process' if competitor else 'alone':15} {r['s_per_step']:6.1f} s/step "
                    f"{r['tokens_per_s']:6.1f} tok/s (load {r['load_average']:.1f})",
                    flush=True,
                )
    print("\n| OMP_WAIT_POLICY | alone s/step | +1 busy s/step | busy/alone throughput |\n|---|---:|---:|---:|")
    for policy in ("ACTIVE", "PASSIVE"):
        alone, busy = (next(r for r in rows if r["policy"] == policy and r["competitor"] == c) for c in (False, True))
        print(
            f"| {policy} | {alone['s_per_step']:.1f} | {busy['s_per_step']:.1f} | "
            f"{alone['s_per_step'] / busy['s_per_step']:.2f}× |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
