"""Exact match: the answer is the reference, character for character.

Leading and trailing whitespace is ignored on both sides: tokenizers and templates add or drop
it without the model meaning anything by it.
"""

from __future__ import annotations


def exact_match(output: str, reference: str) -> float:
    """1.0 when `output` equals `reference` after stripping outer whitespace, else 0.0.

    >>> exact_match(" billing.refund\\n", "billing.refund"), exact_match("Billing.refund", "billing.refund")
    (1.0, 0.0)
    """
    return float(output.strip() == reference.strip())
