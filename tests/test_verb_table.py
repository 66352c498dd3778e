"""The verb table: every help text's example commands parse, and help never loads torch."""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys

import pytest

from tunery.cli import GETTING_STARTED, VERBS, build_parser


def example_commands(text: str) -> list[list[str]]:
    """The `tunery ...` commands of a help text, as argv lists (continuations joined, comments,
    environment assignments and other programs left out)."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        if not re.match(r"\s*(\w+=\S+\s+)*tunery\s", line):
            continue  # prose, or another program
        words = shlex.split(line, comments=True)
        while words[0] != "tunery":
            words = words[1:]  # VAR=value tunery ...
        end = next((i for i, w in enumerate(words) if w in {"&", "|", ">", "&&"}), len(words))
        commands.append(words[1:end])
    return commands


@pytest.mark.parametrize("verb", VERBS)
def test_every_example_of_a_verb_parses(verb):
    module = importlib.import_module(f"tunery.commands.{VERBS[verb]}")
    commands = example_commands(module.EXAMPLES)
    assert commands, f"`tunery {verb} --help` shows no example"
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv)  # argparse exits with status 2 on a stale example
        assert args._run is not None


def test_top_level_help_lists_every_verb_and_a_first_fine_tune(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert all(verb in text for verb in VERBS)
    commands = example_commands(GETTING_STARTED)
    assert [c[0] for c in commands] == ["validate", "estimate", "train", "compare", "serve"]
    parser = build_parser()
    for argv in commands:
        parser.parse_args(argv)


def test_help_and_a_missing_verb_never_import_torch():
    probe = (
        "import sys\n"
        "from tunery.cli import main\n"
        "code = main([])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr  # no verb: usage, exit 2
    assert "Run `tunery VERB --help`" in result.stdout
