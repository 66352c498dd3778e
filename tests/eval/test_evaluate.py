"""The Python API the trainer and the demo call: `evaluate(...) -> EvalReport`."""

from __future__ import annotations

from tunery.eval import evaluate
from tunery.eval.heldout import load_heldout


def test_pattern_references_are_graded_by_regex_and_left_out_of_the_loss(
    tuned_run, ticket_files, write_jsonl, tmp_path
):
    """The tuned adapter answers "billing" or "account": /^(billing|account)$/ accepts that, /^refund$/ does not."""
    items = load_heldout(ticket_files["heldout"])[:2]
    rows = [
        {"messages": [*item.prompt, {"role": "assistant", "content": pattern}]}
        for item, pattern in zip(items, ["/^(billing|account)$/", "/^refund$/"], strict=True)
    ]
    report = evaluate(write_jsonl(tmp_path / "patterns.jsonl", rows), adapter=tuned_run, device="cpu")
    assert report.graders == ["regex"]
    assert [e.scores["regex"] for e in report.examples] == [1.0, 0.0]
    assert report.loss is None and all(e.loss is None for e in report.examples)
    summary = report.to_dict()
    assert summary["metrics"]["regex"]["mean"] == 0.5
    assert "examples" not in summary and len(report.to_dict(examples=True)["examples"]) == 2
