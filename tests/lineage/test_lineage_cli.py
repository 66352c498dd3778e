"""Lineage through the real CLI on the tiny model: registration at the end of training, the model
card, `runs list|show|diff`, `datasets add|list|show`, eval/compare reports, and `reproduce`.

Two short runs are trained once for the module, into a registry of their own ($TUNERY_HOME is a
temporary directory), on private copies of the data so that a test may edit a file afterwards.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from builders import run_cli

from tunery.lineage.datasets import dataset_id

TINY = ["n_epochs=1", "batch_size=8", "lora.r=4", "eval_every=6", "save_every=3"]


@pytest.fixture(scope="module")
def lab(tiny_model_dir, chat_data, tmp_path_factory):
    """Run A (6 steps, lr 1e-3, seed 0) and run B (2 steps, lr 3e-3, seed 1) in one registry."""
    root = tmp_path_factory.mktemp("lineage")
    env = {"TUNERY_HOME": str(root / "home")}
    data = {}
    for name in ("a", "b"):
        data[name] = (root / f"train-{name}.jsonl", root / f"valid-{name}.jsonl")
        shutil.copy(chat_data[0], data[name][0])
        shutil.copy(chat_data[1], data[name][1])
    runs = {"a": root / "run-a", "b": root / "run-b"}
    extra = {"a": ["seed=0"], "b": ["seed=1", "learning_rate=3e-3", "max_steps=2"]}
    logs = {}
    for name, out in runs.items():
        train, valid = data[name]
        result = run_cli(
            "train",
            "--model",
            tiny_model_dir,
            "--data",
            train,
            "--validation",
            valid,
            "--output",
            out,
            *TINY,
            *extra[name],
            env=env,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        logs[name] = result.stderr
    return {"root": root, "env": env, "data": data, "runs": runs, "logs": logs}


def tunery(lab, *args):
    return run_cli(*args, env=lab["env"])


def show(lab, ref) -> dict:
    result = tunery(lab, "runs", "show", ref, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_finished_run_registers_its_full_lineage(lab, tiny_model_dir):
    run_dir = lab["runs"]["a"]
    assert "registered run" in lab["logs"]["a"]
    record = show(lab, str(run_dir))
    manifest = json.loads((run_dir / "final" / "tunery.json").read_text())
    assert record["path"] == str(run_dir.resolve())
    assert record["base_model"] == str(tiny_model_dir)
    assert record["base_model_sha256"] == manifest["base_model_sha256"] and len(record["base_model_sha256"]) == 64
    assert record["config"] == manifest["config"] and record["seed"] == 0
    assert record["metrics"] == manifest["metrics"]
    assert record["versions"]["tunery"] == manifest["tunery_version"] and "torch" in record["versions"]
    assert len(record["versions"]["tunery_training_code"]) == 12 and record["threads"] >= 1  # taken in the trainer
    train, valid = lab["data"]["a"]
    assert [(d["role"], d["dataset_id"]) for d in record["datasets"]] == [
        ("train", dataset_id(train)),
        ("validation", dataset_id(valid)),
    ]
    assert [c["step"] for c in record["checkpoints"]] == [3, 6]
    # The same run is found by its id, by a prefix of it, and through its final/ directory.
    assert show(lab, record["id"][:6])["id"] == show(lab, str(run_dir / "final"))["id"] == record["id"]


def test_the_model_card_replaces_the_peft_template(lab):
    card = (lab["runs"]["a"] / "final" / "README.md").read_text()
    record = show(lab, str(lab["runs"]["a"]))
    assert "# Model Card for Model ID" not in card  # peft's empty template is gone
    for heading in (
        "## Base model",
        "## Training data",
        "## Hyper-parameters",
        "## Metrics",
        "## Compared with prompting the base model",
        "## Forgetting probe",
        "## Intended use",
    ):
        assert heading in card
    assert record["base_model_sha256"] in card
    assert f"`{record['datasets'][0]['dataset_id'][:12]}` | 48 | ok" in card
    assert "| learning_rate | 0.001 |" in card and "| lora.r | 4 |" in card
    assert f"| train_loss | {record['metrics']['train_loss']:.4g} |" in card
    # Training text stays out of the card unless the run's card_examples setting asks for it.
    assert "Label the ticket." not in card
    assert "set `card_examples: N`" in card


def test_runs_list_shows_both_runs(lab):
    result = tunery(lab, "runs", "list")
    assert result.returncode == 0, result.stderr
    for name in ("a", "b"):
        assert show(lab, str(lab["runs"][name]))["id"] in result.stdout
    listed = json.loads(tunery(lab, "runs", "list", "--json").stdout)
    assert [Path(r["path"]).name for r in listed] == ["run-a", "run-b"]


def test_runs_diff_sets_config_data_and_metrics_side_by_side(lab):
    a, b = (str(lab["runs"][name]) for name in ("a", "b"))
    rows = json.loads(tunery(lab, "runs", "diff", a, b, "--json").stdout)["rows"]
    differing = {(r["section"], r["key"]) for r in rows if not r["same"]}
    assert {("config", "learning_rate"), ("config", "seed"), ("config", "max_steps")} <= differing
    assert ("data", "train") not in differing  # two copies of one file are one dataset
    assert ("metrics", "train_loss") in differing and ("metrics", "step") in differing
    step = next(r for r in rows if r["key"] == "step")
    assert (step["a"], step["b"], step["delta"]) == (6, 2, -4)
    assert not any(r["key"] in ("elapsed_s", "tokens_per_second") for r in rows)  # timings say nothing

    table = tunery(lab, "runs", "diff", a, b)
    assert table.returncode == 0, table.stderr
    for text in ("learning_rate", "0.001", "0.003", "train_loss", "B − A", "differences"):
        assert text in table.stdout


def test_datasets_commands(lab):
    train = lab["data"]["a"][0]
    known = dataset_id(train)
    listed = json.loads(tunery(lab, "datasets", "list", "--json").stdout)
    assert {d["id"] for d in listed} == {known, dataset_id(lab["data"]["a"][1])}
    again = tunery(lab, "datasets", "add", train)
    assert again.returncode == 0 and "already registered" in again.stdout
    shown = tunery(lab, "datasets", "show", known[:8])
    assert shown.returncode == 0, shown.stderr
    run_a = show(lab, str(lab["runs"]["a"]))["id"]
    assert known in shown.stdout and f"run {run_a} (train)" in shown.stdout and "48 of 48" in shown.stdout
    missing = tunery(lab, "datasets", "show", "ffffffff")
    assert missing.returncode == 2 and "no dataset 'ffffffff'" in missing.stderr and "Traceback" not in missing.stderr


def test_eval_and_compare_reports_join_the_run_and_its_card(lab, tmp_path):
    run_dir = lab["runs"]["a"]
    heldout = lab["data"]["a"][1]
    fast = ["--max-new-tokens", "4", "--batch-size", "16", "--no-loss"]
    evaluated = tunery(lab, "eval", "--adapter", run_dir, "--data", heldout, *fast, "--output", tmp_path / "e.json")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    compared = tunery(
        lab,
        "compare",
        "--tuned",
        run_dir,
        "--train",
        lab["data"]["a"][0],
        "--data",
        heldout,
        "--shots",
        "1",
        "--no-forgetting",
        *fast,
        "--output",
        tmp_path / "c.json",
    )
    assert compared.returncode == 0, compared.stderr[-2000:]
    reports = show(lab, str(run_dir))["reports"]
    assert [(r["kind"], r["path"]) for r in reports] == [
        ("eval", str(run_dir / "eval" / "report.json")),  # the final eval `tunery train` ran itself
        ("eval", str(tmp_path / "e.json")),
        ("compare", str(tmp_path / "c.json")),
    ]
    verdict = json.loads((tmp_path / "c.json").read_text())["verdict"]
    card = (run_dir / "final" / "README.md").read_text()
    assert f"**Verdict:** {verdict}" in card and "## Evaluations" in card


def test_reproduce_rebuilds_a_run_bitwise_even_after_its_data_file_changed(lab):
    original = show(lab, str(lab["runs"]["b"]))
    train_b = lab["data"]["b"][0]
    train_b.write_text(train_b.read_text().replace("please help", "please HELP"))  # no longer the trained data
    out = lab["root"] / "run-b-again"
    result = tunery(lab, "reproduce", original["id"], "--output", out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "(stored copy)" in result.stdout and "bitwise identical" in result.stdout
    again = show(lab, str(out))
    assert again["reproduces"] == original["id"]
    assert again["metrics"]["train_loss"] == original["metrics"]["train_loss"]  # == on floats: bitwise
    assert [d["dataset_id"] for d in again["datasets"]] == [d["dataset_id"] for d in original["datasets"]]


def test_reproduce_refuses_a_changed_base_model(lab, tiny_model_dir, tmp_path):
    """A run whose recorded base hash no longer matches the weights is not re-trained."""
    moved = tmp_path / "run"
    shutil.copytree(lab["runs"]["a"], moved)
    manifest_path = moved / "final" / "tunery.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["base_model_sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    result = tunery(lab, "reproduce", moved, "--output", tmp_path / "never")
    assert result.returncode == 1, result.stderr
    assert "has changed: weights sha256" in result.stderr and not (tmp_path / "never").exists()
