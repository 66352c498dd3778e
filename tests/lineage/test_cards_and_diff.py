"""The model card and the run diff from registry records, without training anything.

The records are built by hand here; the CLI tests (test_cli.py) check the same code on real runs.
The compare summary has the shape `CompareReport.to_dict()` gives (see tunery/eval/compare.py).
"""

from __future__ import annotations

import pytest

from tunery.lineage.cards import render_card
from tunery.lineage.datasets import register_dataset
from tunery.lineage.diff import diff_runs
from tunery.store.registry import Registry, RunDataset, RunRecord

COMPARE = {
    "primary": "exact",
    "data": "test.jsonl",
    "verdict": "fine-tuning beats few-shot prompting by 0.62 exact (CI 0.50..0.73)",
    "systems": {
        "zero_shot": {"metrics": {"exact": {"mean": 0.1, "low": 0.0, "high": 0.2}}, "prompt_tokens_per_request": 150},
        "few_shot": {"metrics": {"exact": {"mean": 0.2, "low": 0.1, "high": 0.3}}, "prompt_tokens_per_request": 400},
        "tuned": {"metrics": {"exact": {"mean": 0.82, "low": 0.7, "high": 0.9}}, "prompt_tokens_per_request": 150},
    },
    "forgetting": {
        "verdict": "no measurable forgetting: probe score 0.50 → 0.47, a drop within noise (CI -0.03..0.10)",
        "by_skill": {"arithmetic": {"base": 0.6, "tuned": 0.5}, "facts": {"base": 0.4, "tuned": 0.4}},
    },
}


def run(run_id: str, dataset: str, **changes) -> RunRecord:
    values = dict(
        id=run_id,
        path=f"/runs/{run_id}",
        registered_at=0.0,
        created_at="2025-06-01T10:00:00",
        status="succeeded",
        method="sft",
        adapter="lora",
        base_model="smollm2-135m-instruct",
        base_model_path=None,
        base_model_sha256="c" * 64,
        seed=0,
        config={"learning_rate": 0.001, "n_epochs": 3, "lora": {"r": 16, "alpha": 32, "dropout": 0.0}, "output": "x"},
        versions={"tunery": "0.1.0", "torch": "2.13.0"},
        metrics={"train_loss": 0.5, "full_valid_loss": 0.7, "tokens_per_second": 900.0, "step": 30},
        threads=2,
        datasets=(RunDataset("train", dataset, "/data/train.jsonl", None),),
    )
    values.update(changes)
    return RunRecord(**values)


@pytest.fixture
def registry(tmp_path, chat_data):
    with Registry(tmp_path / "registry.sqlite") as registry:
        dataset = register_dataset(registry, chat_data[0], tmp_path / "home")[0]
        registry.add_run(run("aaa111", dataset.id))
        yield registry


def test_the_card_carries_lineage_verdict_and_forgetting(registry):
    record = registry.get_run("aaa111")
    assert "Not compared yet" in render_card(registry, record)
    registry.add_report("aaa111", "compare", "/reports/compare.json", COMPARE)
    card = render_card(registry, record)
    assert card.startswith("---\nbase_model: smollm2-135m-instruct\nlibrary_name: peft\n")
    assert "LoRA (r=16, alpha=32, dropout=0.0)" in card
    assert f"| train | `{record.datasets[0].dataset_id[:12]}` | 48 | ok | train.jsonl |" in card
    # Statistics, not the data: a card is shared, and training text can hold people's details.
    assert "| messages per example | 3.0 |" in card and "| examples with a system prompt | 100% (1 distinct) |" in card
    assert "Label the ticket." not in card and "please help" not in card and "set `card_examples: N`" in card
    assert "| learning_rate | 0.001 |" in card and "| n_epochs | 3 |" in card
    assert "| full_valid_loss | 0.7 |" in card and "tokens_per_second" not in card
    assert f"**Verdict:** {COMPARE['verdict']}" in card
    assert "| tuned | 0.820 (0.70..0.90) | 150 |" in card
    assert COMPARE["forgetting"]["verdict"] in card and "| arithmetic | 0.6 | 0.5 |" in card
    assert "tunery reproduce aaa111" in card


def test_the_card_quotes_training_text_only_when_asked(registry):
    record = registry.get_run("aaa111")
    asked = run("ccc333", record.datasets[0].dataset_id, config={**record.config, "card_examples": 2})
    card = render_card(registry, asked)
    assert "The system prompt of the training data:\n\n~~~text\nLabel the ticket.\n~~~\n" in card
    assert card.count("Training example ") == 2 and "please help" in card and "card_examples: N" not in card


def test_diff_shows_what_differs_and_all_metrics(registry):
    dataset = registry.get_run("aaa111").datasets[0].dataset_id
    a = registry.get_run("aaa111")
    b = run(
        "bbb222",
        dataset,
        seed=1,
        config={**a.config, "learning_rate": 0.002, "output": "y"},
        metrics={**a.metrics, "train_loss": 0.25, "tokens_per_second": 1000.0},
    )
    rows = diff_runs(a, b)
    assert [(r.section, r.key) for r in rows] == [
        ("config", "learning_rate"),  # `output` always differs and is left out
        ("metrics", "train_loss"),
        ("metrics", "full_valid_loss"),
        ("metrics", "step"),  # timings are left out
    ]
    assert rows[0].delta == pytest.approx(0.001) and rows[1].delta == pytest.approx(-0.25)
    assert rows[2].same and rows[3].same  # shown anyway: results are what two runs are compared for
    everything = diff_runs(a, b, everything=True)
    assert ("data", "train") in [(r.section, r.key) for r in everything]
    assert ("base", "weights sha256") in [(r.section, r.key) for r in everything]
