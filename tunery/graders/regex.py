"""Regex match: the reference is a pattern the answer must match.

How a reference carries a pattern: the whole reference text is written `/PATTERN/FLAGS`, a
slash, the pattern, a slash, and optional flags from `i` (ignore case), `m` (multi-line) and `s`
(dot matches newline). For example the held-out line

    {"messages": [..., {"role": "assistant", "content": "/^\\\\d{4}-\\\\d{2}-\\\\d{2}$/"}]}

accepts any ISO date. The pattern is *searched* for in the answer (outer whitespace removed), as
grep does; anchor it with `^` and `$` to demand the whole answer. A pattern is no text to compute
a loss on, so while this grader is in use, loss and perplexity skip the pattern references.
"""

from __future__ import annotations

import re
from functools import lru_cache

_REGEX_REFERENCE = re.compile(r"^/(.+)/([ims]*)$", re.DOTALL)
_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}


def is_regex_reference(reference: str) -> bool:
    """Whether the reference is written as `/PATTERN/FLAGS` (and the pattern compiles).

    >>> is_regex_reference("/^yes$/i"), is_regex_reference("yes"), is_regex_reference("/([/")
    (True, False, False)
    """
    try:
        return _compile(reference) is not None
    except re.error:
        return False


@lru_cache(maxsize=1024)
def _compile(reference: str) -> re.Pattern | None:
    found = _REGEX_REFERENCE.match(reference.strip())
    if not found:
        return None
    flags = 0
    for letter in found.group(2):
        flags |= _FLAGS[letter]
    return re.compile(found.group(1), flags)


def regex_match(output: str, reference: str) -> float:
    """1.0 when the reference's pattern is found in the output.

    Raises:
        ValueError: the reference is not a `/PATTERN/FLAGS` pattern (the graders table checks first).

    >>> regex_match("The answer is 12.", r"/\\b12\\b/"), regex_match("112", r"/\\b12\\b/")
    (1.0, 0.0)
    >>> regex_match(" YES \\n", "/^yes$/i"), regex_match("yes, sure", "/^yes$/i")
    (1.0, 0.0)
    """
    pattern = _compile(reference)
    if pattern is None:
        raise ValueError(f"reference {reference!r} is not written as /PATTERN/FLAGS")
    return float(pattern.search(output.strip()) is not None)
