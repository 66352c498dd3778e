"""JSON graders: is the answer valid JSON, and is it the same JSON value as the reference.

Equality compares parsed values, so key order and whitespace never matter, while types do:
`1` and `"1"` differ, as do `1` and `1.5`. (`1 == 1.0` and `true == 1` in Python, so numbers and
booleans are compared with their type.) A Markdown code fence around the answer is removed first:
chat models wrap JSON in ```json fences even when told not to, and the content is what counts.
"""

from __future__ import annotations

import json
import re

_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(.*?)\n?```$", re.DOTALL)


def parse_json(text: str) -> tuple[bool, object]:
    """(True, value) when `text` (outer whitespace and one code fence removed) is JSON."""
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def json_valid(output: str, reference: str) -> float:
    """1.0 when the output parses as JSON; the reference is not consulted.

    >>> json_valid('{"a": 1}', ""), json_valid("{'a': 1}", ""), json_valid('```json\\n[1]\\n```', "")
    (1.0, 0.0, 1.0)
    """
    return float(parse_json(output)[0])


def json_equal(output: str, reference: str) -> float:
    """1.0 when output and reference parse to the same JSON value, ignoring key order.

    >>> json_equal('{"b": [1, 2], "a": "x"}', '{"a": "x", "b": [1, 2]}')
    1.0
    >>> json_equal('{"a": 1}', '{"a": 1.0}'), json_equal('{"a": true}', '{"a": 1}'), json_equal('[2, 1]', '[1, 2]')
    (0.0, 0.0, 0.0)
    """
    ok_out, out = parse_json(output)
    ok_ref, ref = parse_json(reference)
    return float(ok_out and ok_ref and _typed(out) == _typed(ref))


def _typed(value: object) -> object:
    """The value with every scalar tagged by its type, so that 1, 1.0 and True stay distinct."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return (type(value).__name__, value)
