"""`--response-format` for eval and compare: answers constrained as the server constrains them, the
scores shown with and without the constraint, and the verdict saying which it compared."""

from __future__ import annotations

import json

import jsonschema
from rich.console import Console

from tunery.eval.report import EvalReport, print_eval_report

ENV = {"OMP_NUM_THREADS": "1"}
SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["billing", "account"]}},
    "required": ["label"],
    "additionalProperties": False,
}


def _files(tmp_path, schema):
    data = tmp_path / "heldout.jsonl"
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Route ticket {i} as JSON"},
                {"role": "assistant", "content": json.dumps({"label": label})},
            ]
        }
        for i, label in enumerate(["billing", "account", "billing", "account"])
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fmt = tmp_path / "format.json"
    fmt.write_text(json.dumps(schema))
    return data, fmt


def test_eval_scores_the_model_with_and_without_the_format(cli, tiny_model_dir, tmp_path):
    # An OpenAI response_format object, exactly what an app sends, works as well as a bare schema.
    data, fmt = _files(tmp_path, {"type": "json_schema", "json_schema": {"name": "route", "schema": SCHEMA}})
    out = tmp_path / "eval.json"
    result = cli(
        "eval",
        "--model",
        tiny_model_dir,
        "--data",
        data,
        "--response-format",
        fmt,
        "--max-new-tokens",
        "48",
        "--no-loss",
        "--output",
        out,
        "--json",
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["response_format"] == str(fmt)
    assert report["metrics"]["json_valid"]["mean"] == 1.0  # every constrained answer is the schema's JSON
    assert report["without_format"]["json_valid"]["mean"] == 0.0  # a random model writes no JSON by itself
    for row in (json.loads(line) for line in out.with_name("eval.examples.jsonl").read_text().splitlines()):
        jsonschema.validate(json.loads(row["output"]), SCHEMA)
    assert "constrained to" in result.stderr

    console = Console(record=True, width=100)
    print_eval_report(EvalReport.model_validate(report), console=console)
    text = console.export_text()
    assert "with format.json (95% CI)" in text and "unconstrained (95% CI)" in text


def test_an_unenforceable_schema_is_refused_naming_the_file_and_keyword(cli, tiny_model_dir, tmp_path):
    data, fmt = _files(tmp_path, {"type": "array", "uniqueItems": True})
    result = cli("eval", "--model", tiny_model_dir, "--data", data, "--response-format", fmt, env=ENV)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert str(fmt) in result.stderr and "uniqueItems" in result.stderr


def test_compare_decides_on_the_constrained_systems_and_says_so(cli, tuned_run, ticket_files, tmp_path):
    data, fmt = _files(tmp_path, SCHEMA)
    result = cli(
        "compare",
        "--tuned",
        tuned_run,
        "--train",
        ticket_files["train"],
        "--data",
        data,
        "--shots",
        "0",
        "--response-format",
        fmt,
        "--max-new-tokens",
        "48",
        "--no-forgetting",
        "--no-loss",
        "--output",
        tmp_path / "c.json",
        "--json",
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert list(report["systems"]) == ["zero_shot", "tuned", "zero_shot+format", "tuned+format"]
    assert report["response_format"] == str(fmt)
    assert report["verdict"].endswith(f", every system constrained to {fmt}")
    assert report["primary"] == "json_equal"
    for name in ["zero_shot+format", "tuned+format"]:
        assert report["systems"][name]["metrics"]["json_valid"]["mean"] == 1.0
        assert report["systems"][name]["response_format"] == str(fmt)
    assert report["systems"]["zero_shot"]["metrics"]["json_valid"]["mean"] == 0.0
