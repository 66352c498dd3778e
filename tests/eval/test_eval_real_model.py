"""One short run of `tunery eval` on the real embedded SmolLM2, as a user would start it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TICKETS = Path(__file__).resolve().parents[2] / "examples" / "support-tickets" / "test.jsonl"


@pytest.mark.real_model
def test_eval_of_the_default_model_on_a_few_support_tickets(cli, smollm2_dir, tmp_path):
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("".join(TICKETS.read_text().splitlines(keepends=True)[:4]))
    args = ["--data", heldout, "--json", "--output", tmp_path / "r.json"]
    result = cli("eval", "--model", "smollm2-135m-instruct", *args)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == 4 and report["graders"] == ["exact", "normalized"]  # labels such as billing.refund
    # The untuned model does not know the label set; its loss on the labels is far from zero.
    assert report["loss"]["loss"] > 1.0 and report["loss"]["tokens"] >= 4 * 3
    rows = [json.loads(line) for line in (tmp_path / "r.examples.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(row["output"] for row in rows)
