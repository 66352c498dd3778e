"""The held-out pass rate a reinforcement fine-tuning run gained over its base, with a bootstrap interval.

    python examples/rft_margin.py RUN_DIR

Reads RUN_DIR/metrics.jsonl: the greedy held-out evaluation at step 0 (the base model) and the
last one, each prompt passed or not. The margin is the mean of the per-prompt differences, and
its 95 % interval a paired percentile bootstrap over prompts (tunery.eval.stats.bootstrap_ci).
"""

import json
import sys
from pathlib import Path

from tunery.eval.stats import bootstrap_ci


def main(run_dir: str) -> None:
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["type"] == "valid" and "valid_passed" in r]
    base, last = evals[0], evals[-1]
    diffs = [b - a for a, b in zip(base["valid_passed"], last["valid_passed"], strict=True)]
    margin = bootstrap_ci(diffs)
    elapsed = max(r.get("elapsed_s", 0) for r in records if r["type"] == "train")
    print(
        f"held-out greedy pass rate: base (step 0) {base['valid_pass_rate']:.3f}, "
        f"step {last['step']} {last['valid_pass_rate']:.3f} on {len(diffs)} prompts; "
        f"margin {margin.estimate:+.3f} (95% CI {margin.low:+.3f}..{margin.high:+.3f}); "
        f"training time {elapsed / 60:.1f} min"
    )


if __name__ == "__main__":
    main(sys.argv[1])
