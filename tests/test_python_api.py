"""The Python API (`import tunery`): the verbs as functions, on the tiny model, and the `Run` object."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from builders import REPO, run_cli

import tunery
from tunery.data.validate import ValidationReport
from tunery.errors import TuneryError
from tunery.eval.report import EvalReport


@pytest.fixture(scope="module")
def run(tuned_run):
    return tuned_run  # conftest: tunery.train(..., n_epochs=1, batch_size=8, save_every=3, lora={"r": 4})


def test_import_is_light_and_validate_needs_no_torch(chat_data):
    code = (
        "import sys, tunery; r = tunery.validate(sys.argv[1]);"
        "print(r.ok, r.stats.examples, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, chat_data[0]], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.split() == ["True", "48", "False", "False"], out.stderr


def test_validate_returns_the_report_the_cli_prints(chat_data, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(chat_data[0].read_text() + '{"messages": []}\n')
    report = tunery.validate(bad, validation=chat_data[1])
    assert isinstance(report, ValidationReport) and not report.ok
    assert [(i.line, i.code) for i in report.errors] == [(49, "missing_messages_list")]
    cli = run_cli("validate", bad, "--validation", chat_data[1], "--json")
    assert cli.returncode == 1 and json.loads(cli.stdout) == report.to_dict()


def test_validate_with_a_model_counts_tokens(chat_data, tiny_model_dir):
    report = tunery.validate(chat_data[0], model=str(tiny_model_dir))
    assert report.stats.max_seq_len == 512 and report.stats.trained_tokens > 0
    with pytest.raises(TuneryError, match="max_seq_len needs a model"):
        tunery.validate(chat_data[0], max_seq_len=64)


def test_train_returns_a_run_with_metrics_checkpoints_and_a_model(run, chat_data):
    assert isinstance(run, tunery.Run) and run.succeeded
    assert run.config.lora.r == 4 and run.config.unresolved() == []
    steps = [r["step"] for r in run.metrics if r["type"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]  # 48 examples / 8
    # The newest keep_checkpoints=2: early stopping (auto, with a validation file) also saves each
    # new best, and the validation loss fell at every pass (eval_every=1) of this short run.
    assert [p.name for p in run.checkpoints] == ["step-000005", "step-000006"]
    assert run.final == run.path / "final" and run.manifest["method"] == "sft"
    assert run.eval_report["n"] == 12  # graded its own answers on the validation file
    answer = run.generate("label: the sky is blue", max_new_tokens=4)
    assert isinstance(answer, str)
    assert run.generate([{"role": "user", "content": "label: the sky is blue"}], max_new_tokens=4) == answer
    # Importing the training loop did not replace the function with the subpackage of that name.
    assert callable(tunery.train) and callable(tunery.export) and "tunery.train.sft" in sys.modules
    assert "state='succeeded'" in repr(run)


def test_run_config_reads_files_dicts_and_dotted_keys(tmp_path, chat_data):
    config_file = tmp_path / "run.yaml"
    config_file.write_text(f"data: {chat_data[0]}\nlora:\n  r: 8\n")
    config = tunery.run_config(config_file, n_epochs=2, **{"lora.alpha": 4})
    assert (config.lora.r, config.lora.alpha, config.n_epochs) == (8, 4, 2)
    assert tunery.run_config({"data": "x.jsonl", "lora.r": 2}).lora.r == 2
    with pytest.raises(TuneryError, match="lora.rank: unknown key"):
        tunery.run_config(data="x.jsonl", lora={"rank": 8})
    with pytest.raises(TuneryError, match="no training data"):
        tunery.run_config(n_epochs=1)


def test_train_refuses_a_directory_that_holds_a_run(run, tiny_model_dir, chat_data):
    with pytest.raises(TuneryError, match="already holds a finished run"):
        tunery.train(model=str(tiny_model_dir), data=chat_data[0], output=run.path)
    with pytest.raises(TuneryError, match="no other settings"):
        tunery.train(resume=run.path, n_epochs=2)


def test_evaluate_writes_the_report_only_when_asked(run, chat_data, tmp_path):
    report = tunery.evaluate(chat_data[1], adapter=run.path, graders=["exact"], max_new_tokens=4)
    assert isinstance(report, EvalReport) and report.n == 12 and report.system == "tuned"
    assert not list(tmp_path.iterdir())
    tunery.evaluate(chat_data[1], adapter=run.path, graders=["exact"], max_new_tokens=4, output=tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["exact"] == report.to_dict()["metrics"]["exact"]
    with pytest.raises(TuneryError, match="nothing to evaluate"):
        tunery.evaluate(chat_data[1])


def test_export_merges_into_a_model_transformers_loads(run, tmp_path):
    from transformers import AutoModelForCausalLM

    exported = tunery.export(run.path, tmp_path / "merged")
    assert exported.kind == "merged" and exported.command == []
    AutoModelForCausalLM.from_pretrained(exported.path)
    with pytest.raises(TuneryError, match="unknown export format"):
        tunery.export(run.path, tmp_path / "x", format="onnx")
