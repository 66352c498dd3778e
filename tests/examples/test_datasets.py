"""The bundled example datasets: well-formed, honestly split, and reproducible from their generators."""

from __future__ import annotations

import importlib.util
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tunery.data.formats import detect_format

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPLITS = ("train", "valid", "test")
# Every bundled dataset: its directory and the format all of its lines must have.
DATASETS = {"support-tickets": "chat", "signoff-prefs": "preference"}
TICKET_LABELS = {
    "billing.refund",
    "billing.invoice",
    "account.login",
    "account.delete",
    "shipping.delay",
    "shipping.address",
    "product.defect",
    "other",
}
SIGN_OFF = "— tunery"


def read_rows(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert all(line.strip() for line in lines), f"{path} has blank lines"
    return [json.loads(line) for line in lines]


def load(name: str) -> dict[str, list[dict]]:
    return {split: read_rows(EXAMPLES / name / f"{split}.jsonl") for split in SPLITS}


def prompt_of(row: dict) -> str:
    """What the model is asked: the user turn(s), which must never repeat across splits."""
    messages = row["messages"] if "messages" in row else row["input"]["messages"]
    return json.dumps([m["content"] for m in messages if m["role"] == "user"]).lower()


@pytest.mark.parametrize("name", DATASETS)
def test_every_line_has_the_expected_format(name):
    for split, rows in load(name).items():
        assert rows, f"{name}/{split}.jsonl is empty"
        formats = {detect_format(row) for row in rows}
        assert formats == {DATASETS[name]}, f"{name}/{split}.jsonl: {formats}"


@pytest.mark.parametrize("name", DATASETS)
def test_no_prompt_is_in_two_splits_or_twice_in_one(name):
    seen: dict[str, str] = {}
    for split, rows in load(name).items():
        for line, row in enumerate(rows, start=1):
            key = prompt_of(row)
            assert key not in seen, f"{name}/{split}.jsonl:{line} repeats a prompt from {seen[key]}"
            seen[key] = f"{split}.jsonl:{line}"


def test_ticket_sizes_and_fixed_label_set():
    splits = load("support-tickets")
    assert {split: len(rows) for split, rows in splits.items()} == {"train": 300, "valid": 40, "test": 60}
    for split, rows in splits.items():
        for row in rows:
            roles = [m["role"] for m in row["messages"]]
            assert roles == ["system", "user", "assistant"]
            assert row["messages"][-1]["content"] in TICKET_LABELS
        # Every label is in every split, roughly balanced, so per-label scores mean something.
        counts = {label: sum(r["messages"][-1]["content"] == label for r in rows) for label in TICKET_LABELS}
        assert max(counts.values()) - min(counts.values()) <= 1, (split, counts)


def test_ticket_system_prompt_lists_exactly_the_labels():
    system = load("support-tickets")["train"][0]["messages"][0]["content"]
    listed = {line.split(":")[0] for line in system.splitlines()[1:]}
    assert listed == TICKET_LABELS


def template_pattern(template: str) -> str:
    """A regex matching any filling of a generator template: `[a|b]` alternatives, `{slot}` values."""
    out = []
    for piece in re.split(r"(\[[^\]]*\]|\{\w+\})", template):
        if piece.startswith("[") and piece.endswith("]"):
            out.append("(?:" + "|".join(template_pattern(alt) for alt in piece[1:-1].split("|")) + ")")
        elif piece.startswith("{") and piece.endswith("}"):
            out.append(".+?")
        else:
            out.append(re.escape(piece))
    return "".join(out)


def test_ticket_splits_share_no_template():
    """A held-out message is never an instance of a template that train (or the other split) uses."""
    spec = importlib.util.spec_from_file_location("tickets_generate", EXAMPLES / "support-tickets" / "generate.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    # The generator may drop final punctuation, so punctuation is ignored on both sides.
    unpunctuated = str.maketrans("", "", ".!?")
    dealt = generator.split_templates(random.Random(generator.SEED))
    patterns = [
        (split, label, re.compile(template_pattern(t.translate(unpunctuated)), re.IGNORECASE))
        for label, by_split in dealt.items()
        for split, templates in by_split.items()
        for t in templates
    ]
    matched = total = 0
    for split, rows in load("support-tickets").items():
        for row in rows:
            text = row["messages"][1]["content"].translate(unpunctuated)
            owners = {(s, label) for s, label, pattern in patterns if pattern.search(text)}
            assert owners <= {(split, row["messages"][-1]["content"])}, (split, text, owners)
            matched += bool(owners)
            total += 1
    # Typos can hide a message's template; most messages must still be recognised, or this test proves nothing.
    assert matched > 0.7 * total, f"only {matched} of {total} messages matched a template"


def test_preferred_answers_sign_off_and_rejected_ones_never_do():
    for split, rows in load("signoff-prefs").items():
        assert len(rows) == {"train": 200, "valid": 40, "test": 40}[split]
        for row in rows:
            (chosen,), (rejected,) = row["preferred_output"], row["non_preferred_output"]
            assert chosen["role"] == rejected["role"] == "assistant"
            assert chosen["content"].endswith(SIGN_OFF)
            assert SIGN_OFF not in rejected["content"]
            # Same answer either way: only the sign-off separates them.
            answer = chosen["content"].removesuffix(SIGN_OFF).strip()
            assert rejected["content"].startswith(answer)


@pytest.mark.parametrize("name", DATASETS)
def test_generator_reproduces_the_committed_files(name, tmp_path):
    subprocess.run(
        [sys.executable, str(EXAMPLES / name / "generate.py"), str(tmp_path)], check=True, capture_output=True
    )
    for split in SPLITS:
        committed = (EXAMPLES / name / f"{split}.jsonl").read_bytes()
        assert (tmp_path / f"{split}.jsonl").read_bytes() == committed, f"{name}/{split}.jsonl differs"


@pytest.mark.parametrize("name", DATASETS)
def test_files_pass_tunery_validate(name):
    validate = pytest.importorskip("tunery.data.validate")
    for split in ("valid", "test"):
        report = validate.validate_file(EXAMPLES / name / "train.jsonl", validation=EXAMPLES / name / f"{split}.jsonl")
        assert report.ok, [issue.model_dump() for issue in report.errors]
        assert report.stats.format == DATASETS[name]
