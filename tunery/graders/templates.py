"""Grader templates: `{{sample.output_text}}`, `{{sample.output_json.a.b}}`, `{{item.field}}`.

As in OpenAI's graders, `sample` is the model's answer (`output_text`, and `output_json` when the
text parses as JSON) and `item` is the dataset line. A path walks dict keys and list indices.
Strings are inserted as they are; other values as JSON. A path that does not exist is an
`invalid_variable` error for that sample, never an empty string.
"""

from __future__ import annotations

import json
import re

TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][\w]*(?:\.[\w-]+)*)\s*\}\}")


class TemplateError(ValueError):
    """A template names a variable that this sample or item does not have."""


def make_sample(output_text: str) -> dict:
    """The `sample` namespace for one answer (output_json is None unless the text is JSON)."""
    try:
        output_json = json.loads(output_text)
    except (json.JSONDecodeError, TypeError):
        output_json = None
    return {
        "output_text": output_text,
        "output_json": output_json,
        "output_tools": [],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": output_text}}],
    }


def variables(text: str) -> list[str]:
    """Every variable path in `text`, e.g. ['item.answer', 'sample.output_text']."""
    return TEMPLATE.findall(text)


def lookup(path: str, namespaces: dict) -> object:
    """Walk `path` (e.g. 'item.answer.0') through the namespaces; TemplateError when missing."""
    head, *rest = path.split(".")
    if head not in namespaces:
        raise TemplateError(f"{{{{{path}}}}}: unknown namespace {head!r} (use sample or item)")
    value = namespaces[head]
    for part in rest:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            raise TemplateError(f"{{{{{path}}}}}: {part!r} is not there in this {head}")
    return value


def render(text: str, sample: dict, item: dict) -> str:
    """`text` with every template replaced.

    >>> render("{{ item.n }} vs {{sample.output_text}}", make_sample("7"), {"n": 7})
    '7 vs 7'
    """
    namespaces = {"sample": sample, "item": item}

    def replace(match: re.Match) -> str:
        value = lookup(match.group(1), namespaces)
        return value if isinstance(value, str) else json.dumps(value)

    return TEMPLATE.sub(replace, text)
