"""The main job, end to end, on the bundled support-ticket task (`make demo`).

It runs the same verbs a user would type, in order: validate the data, estimate the cost, show
exactly which tokens are trained, fine-tune the embedded SmolLM2 with LoRA and the `auto`
recipe, then compare the tuned model with zero-shot and few-shot prompting of the base model on
held-out tickets. Every step prints the command it stands for.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

from tunery.cli import main as tunery
from tunery.train.rundir import RunDir

TASK = Path(__file__).resolve().parents[1] / "examples" / "support-tickets"


def step(number: int, title: str, argv: list[str]) -> float:
    print(f"\n=== {number}/5 {title}\n$ tunery {shlex.join(argv)}", flush=True)
    started = time.monotonic()
    code = tunery(argv)
    if code not in (0, None):
        print(f"demo stopped: `tunery {argv[0]}` exited with {code}", file=sys.stderr)
        sys.exit(code)
    return time.monotonic() - started


def main() -> int:
    # Relative to where `make demo` runs, so the printed commands can be copied and show no
    # machine's absolute paths.
    train, valid, test = (os.path.relpath(TASK / f"{split}.jsonl") for split in ("train", "valid", "test"))
    run = f"runs/demo-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    model = "smollm2-135m-instruct"
    timings = {}
    started = time.monotonic()
    timings["validate"] = step(
        1,
        "Validate the data, and show which tokens are trained",
        ["validate", train, "--validation", valid, "--model", model, "--show", "1"],
    )
    timings["estimate"] = step(2, "Estimate tokens, time and cost", ["estimate", train, "--model", model])
    timings["train"] = step(
        3,
        "Fine-tune with LoRA (the auto recipe)",
        ["train", "--model", model, "--data", train, "--validation", valid, "--output", run],
    )
    if (RunDir(run).read_status() or {}).get("state") != "succeeded":
        print(f"demo stopped: training did not finish; resume it with `tunery train --resume {run}`")
        return 1
    timings["plot"] = step(4, "Plot the loss curves", ["plot", run])
    timings["compare"] = step(
        5,
        "Was it worth it? Base zero-shot and 5-shot vs the tuned model, on 60 held-out tickets",
        ["compare", "--tuned", run, "--train", train, "--data", test, "--output", f"{run}/compare-report.json"],
    )
    total = time.monotonic() - started
    print("\n=== timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()) + f"; total {total / 60:.1f} min")
    print(f"run directory: {run}  (final/ adapter, metrics.jsonl, loss.png, compare-report.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
