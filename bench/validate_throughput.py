"""Benchmark: how many examples per second `validate_file` checks without a tokenizer.

The target (issue 2) is at least 50,000 examples/s on this machine, with bounded memory. The
script writes a synthetic chat file (multi-turn, some system prompts and tool calls, ~2% exact
duplicates, a few bad lines) to a temporary directory, validates it, and prints the throughput
and the peak memory of the process.

    .venv/bin/python bench/validate_throughput.py                 # 400k examples, ~20 s in all
    .venv/bin/python bench/validate_throughput.py --examples 5000000   # ~1 GB, the memory check
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from tunery.data.validate import validate_file

WORDS = (
    "the invoice order refund shipping account password reset please thanks help billing "
    "delivery late wrong item size colour return label email address customer support ticket"
).split()


def synthetic_line(rng: random.Random, i: int, phrases: list[str]) -> str:
    def text(n: int) -> str:
        # pre-built phrases keep generation fast; the example number keeps every example unique
        return f"{phrases[rng.randrange(len(phrases))][: n * 7]} #{i}"

    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": "You are a concise support agent."})
    for _ in range(rng.choice((1, 1, 2, 3))):
        messages.append({"role": "user", "content": text(rng.randint(5, 25))})
        if rng.random() < 0.1:
            call = {"id": f"call_{i}", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": text(6)})
        messages.append({"role": "assistant", "content": text(rng.randint(5, 40)), "weight": 1})
    return json.dumps({"messages": messages})


def write_dataset(path: Path, n: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    phrases = [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(2_000)]
    previous = ""
    with path.open("w") as fh:
        for i in range(n):
            if i % 10_000 == 9_999:
                line = '{"messages": [{"role": "user", "content": "broken"'  # invalid JSON
            elif i % 50 == 49:
                line = previous  # an exact duplicate
            else:
                line = synthetic_line(rng, i, phrases)
            fh.write(line + "\n")
            previous = line
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=400_000, help="lines in the synthetic file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tunery-bench-") as tmp:
        path = Path(tmp) / "train.jsonl"
        started = time.perf_counter()
        size = write_dataset(path, args.examples)
        print(f"wrote {args.examples:,} examples ({size / 2**20:.0f} MiB) in {time.perf_counter() - started:.1f} s")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started, cpu_started = time.perf_counter(), time.process_time()
        report = validate_file(path)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = report.stats.lines
    print(f"validated {n:,} lines ({size / 2**20 / seconds:.0f} MiB/s)")
    print(f"  wall: {seconds:.2f} s = {n / seconds:,.0f} examples/s (target 50,000)")
    # On a shared machine the wall clock also counts other processes' turns on the CPU.
    print(
        f"  cpu:  {cpu_seconds:.2f} s = {n / cpu_seconds:,.0f} examples per CPU-second "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    print(f"issues: {dict(sorted(report.issue_counts.items()))}")
    # ru_maxrss is in KiB on Linux
    print(f"peak RSS: {rss_after / 1024:.0f} MiB (before validating: {rss_before / 1024:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
