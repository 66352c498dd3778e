"""The metrics of OpenAI's `text_similarity` grader, each from a well-kept library.

| metric          | computed by                                                                  |
|-----------------|------------------------------------------------------------------------------|
| fuzzy_match     | rapidfuzz `fuzz.ratio` / 100 (normalised Indel similarity of the characters) |
| bleu            | nltk `sentence_bleu`, 1- to 4-grams, smoothing method 1 (Chen & Cherry 2014)  |
| gleu            | nltk `sentence_gleu` (Google-BLEU, Wu et al. 2016), 1- to 4-grams             |
| meteor          | nltk `meteor_score` (Banerjee & Lavie 2005) on exact and stemmed matches      |
| rouge_1..rouge_5| rouge-score's ROUGE-N F-measure (Lin 2004)                                   |
| rouge_l         | rouge-score's ROUGE-L F-measure                                              |
| cosine          | cosine of all-MiniLM-L6-v2 sentence embeddings (offline; see embedding.py)   |

BLEU, GLEU and METEOR read words and punctuation as tokens (`\\w+|[^\\w\\s]`); ROUGE uses its own
tokenizer (lower case, alphanumerics). METEOR's synonym stage needs the WordNet corpus, which
nothing may download at run time, so it matches exact words and Porter stems only: a synonym
counts as a miss. OpenAI embeds with its own model for `cosine`; scores differ in scale, not sense.
"""

from __future__ import annotations

import re
from functools import lru_cache

from tunery.errors import TuneryError

_WORDS = re.compile(r"\w+|[^\w\s]")


def _tokens(text: str) -> list[str]:
    return _WORDS.findall(text)


class _NoSynonyms:
    """Stands in for nltk's WordNet reader: no word has synonyms (see the module docstring)."""

    def synsets(self, *args, **kwargs):
        return []


def _missing(library: str):
    return TuneryError(
        f"the text_similarity grader needs {library}, which is not installed", hint="pip install 'tunery[eval]'"
    )


def fuzzy_match(output: str, reference: str) -> float:
    """>>> fuzzy_match("kitten", "sitting")  # 2·4 matching / 13 characters
    0.6153846153846154
    """
    try:
        from rapidfuzz import fuzz
    except ImportError:
        raise _missing("rapidfuzz") from None
    return fuzz.ratio(output, reference) / 100.0


def bleu(output: str, reference: str) -> float:
    try:
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    except ImportError:
        raise _missing("nltk") from None
    hypothesis, ref = _tokens(output), _tokens(reference)
    if not hypothesis or not ref:
        return float(hypothesis == ref)
    return float(sentence_bleu([ref], hypothesis, smoothing_function=SmoothingFunction().method1))


def gleu(output: str, reference: str) -> float:
    try:
        from nltk.translate.gleu_score import sentence_gleu
    except ImportError:
        raise _missing("nltk") from None
    hypothesis, ref = _tokens(output), _tokens(reference)
    if not hypothesis or not ref:
        return float(hypothesis == ref)
    return float(sentence_gleu([ref], hypothesis))


def meteor(output: str, reference: str) -> float:
    try:
        from nltk.translate.meteor_score import meteor_score
    except ImportError:
        raise _missing("nltk") from None
    hypothesis, ref = _tokens(output), _tokens(reference)
    if not hypothesis or not ref:
        return float(hypothesis == ref)
    return float(meteor_score([ref], hypothesis, wordnet=_NoSynonyms()))


@lru_cache(maxsize=8)
def _rouge(kind: str):
    try:
        from rouge_score.rouge_scorer import RougeScorer
    except ImportError:
        raise _missing("rouge-score") from None
    return RougeScorer([kind], use_stemmer=False)


def rouge(kind: str, output: str, reference: str) -> float:
    """ROUGE F-measure; `kind` is rouge1..rouge5 or rougeL (rouge-score's names)."""
    return float(_rouge(kind).score(reference, output)[kind].fmeasure)


def cosine(output: str, reference: str) -> float:
    from tunery.graders.embedding import embedding_similarities

    return float(embedding_similarities([output], [reference])[0])


def similarity(metric: str, output: str, reference: str) -> float:
    """The named metric (one of OpenAI's `evaluation_metric` values) for one pair."""
    if metric.startswith("rouge_"):
        return rouge("rouge" + metric.removeprefix("rouge_").upper(), output, reference)
    return {"fuzzy_match": fuzzy_match, "bleu": bleu, "gleu": gleu, "meteor": meteor, "cosine": cosine}[metric](
        output, reference
    )
