"""`tunery train` helps a newcomer find the config keys: --keys from the schema, did-you-mean,
--epochs as in estimate, exit codes, and the right hint on an --output that is already used."""

from __future__ import annotations

import json

from pydantic import BaseModel

from tunery.train.config import RunConfig, config_keys


def test_keys_lists_every_schema_key_with_type_default_and_help(cli):
    result = cli("train", "--keys", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    rows = config_keys()
    flat = {key for key, *_ in rows}
    assert {"n_epochs", "lora.r", "dpo.beta", "distributed.strategy", "data"} <= flat
    sections = {
        name
        for name, field in RunConfig.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }
    assert {"lora", "dpo", "distributed"} <= sections
    assert flat >= set(RunConfig.model_fields) - sections
    assert all(any(key.startswith(f"{section}.") for key in flat) for section in sections)
    for key, *_, help_text in rows:
        assert key in result.stdout and help_text, f"{key} has no help line"
    assert ("n_epochs", "int | auto", "auto") == next(r[:3] for r in rows if r[0] == "n_epochs")
    assert ("lr_scheduler", "linear|cosine|constant", "cosine") == next(r[:3] for r in rows if r[0] == "lr_scheduler")
    assert "torch" not in result.stderr
    assert "tunery train --keys" in cli("train", "--help").stdout


def test_a_misspelt_key_gets_the_closest_one(cli, tmp_path):
    result = cli("train", "--data", tmp_path / "train.jsonl", "n_epoch=1")
    assert result.returncode == 2
    assert "n_epoch: unknown key (did you mean n_epochs?" in result.stderr
    assert "lora.rank: unknown key (did you mean lora.r?" in cli("train", "--data", "x", "lora.rank=8").stderr


def test_epochs_flag_is_n_epochs_and_a_missing_file_is_exit_2(cli, tmp_path):
    bad = cli("train", "--data", tmp_path / "train.jsonl", "--epochs", "0")
    assert bad.returncode == 2 and "n_epochs must be a positive integer or 'auto', got 0" in bad.stderr
    missing = cli("train", "--data", tmp_path / "train.jsonl", "--epochs", "2")
    assert missing.returncode == 2, missing.stderr
    assert f"error: {tmp_path / 'train.jsonl'} does not exist" in missing.stderr  # validate's words


def test_an_unknown_flag_shows_the_verbs_usage(cli):
    result = cli("train", "--data", "x.jsonl", "--n-epochs", "1")
    assert result.returncode == 2
    assert "usage: tunery train" in result.stderr and "unrecognized arguments: --n-epochs" in result.stderr


def test_output_of_a_finished_run_does_not_suggest_resume(cli, tmp_path, chat_data, tiny_model_dir):
    (tmp_path / "done" / "final").mkdir(parents=True)
    (tmp_path / "done" / "final" / "tunery.json").write_text(json.dumps({}))
    train, _ = chat_data
    result = cli("train", "--model", tiny_model_dir, "--data", train, "--output", tmp_path / "done")
    assert result.returncode == 2
    assert "already holds a finished run" in result.stderr
    assert "--resume" not in result.stderr and "choose another --output" in result.stderr
