"""Normalised match: equal after folding case, punctuation and whitespace.

The normalisation is the SQuAD answer normalisation without its article removal (articles can
matter in a label): lower case, drop every Unicode punctuation character, collapse whitespace.
`overlap.py` tokenises with the same function, so F1 and this grader agree on what a word is.
"""

from __future__ import annotations

import unicodedata


def normalize(text: str) -> str:
    """Lower-case, remove punctuation, collapse runs of whitespace.

    >>> normalize("  Billing.Refund!\\n  please ")
    'billingrefund please'
    """
    kept = "".join(ch for ch in text.lower() if not unicodedata.category(ch).startswith("P"))
    return " ".join(kept.split())


def normalized_match(output: str, reference: str) -> float:
    """1.0 when both sides normalise to the same text.

    >>> normalized_match("Paris.", "paris"), normalized_match("Paris, France", "paris")
    (1.0, 0.0)
    """
    return float(normalize(output) == normalize(reference))
