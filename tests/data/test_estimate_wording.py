"""The estimate's token counts agree with each other where a reader compares them."""

from __future__ import annotations

import re

from builders import EXAMPLES


def test_the_shared_prefix_line_names_the_table_count_it_differs_from(cli, tiny_model_dir):
    result = cli(
        "estimate", EXAMPLES / "support-tickets" / "train.jsonl", "--model", tiny_model_dir, env={"COLUMNS": "250"}
    )
    assert result.returncode == 0, result.stderr
    per_epoch = re.search(r"│ in the data\s+│ ([\d,]+)\s+│", result.stdout)[1]
    line = re.search(r"instead of ([\d,]+) \(the data's ([\d,]+) plus packing padding\)", result.stdout)
    assert line, result.stdout
    assert line[2] == per_epoch and int(line[1].replace(",", "")) >= int(per_epoch.replace(",", ""))
