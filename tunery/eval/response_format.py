"""`--response-format FILE` for eval and compare: answers generated the way the server constrains them.

The file holds either an OpenAI `response_format` object (`{"type": "json_schema", "json_schema":
{"name": ..., "schema": {...}}}` or `{"type": "json_object"}`), exactly what an app sends, or a bare
JSON schema. Constrained decoding alone can lift a baseline (few-shot prompting that always closes its
braces), so the reports show each system's scores with and without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tunery.errors import TuneryError


@dataclass(frozen=True)
class ResponseFormat:
    path: str
    grammar: str  # for tunery.inference.Generator.generate


def load_response_format(path: str | Path) -> ResponseFormat:
    """Read and compile the file.

    Raises:
        TuneryError: a missing file, text that is not JSON, or a schema constrained decoding cannot
            enforce (the message names the unsupported keywords).
    """
    from tunery.constraints import SchemaError, json_grammar

    path = Path(path)
    hint = 'write a JSON schema, or an OpenAI response_format such as {"type": "json_schema", "json_schema": {...}}'
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TuneryError(f"cannot read the response format {path}: {exc.strerror}", hint=hint) from None
    except ValueError as exc:
        raise TuneryError(f"{path} is not JSON: {exc}", hint=hint) from None
    schema = value
    if isinstance(value, dict) and value.get("type") == "json_object":
        schema = None
    elif isinstance(value, dict) and value.get("type") == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
    try:
        return ResponseFormat(str(path), json_grammar(schema))
    except SchemaError as exc:
        raise TuneryError(f"{path}: this JSON schema cannot be enforced: {exc}", hint=hint) from None
