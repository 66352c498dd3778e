"""Word-overlap graders for free text: token F1 (SQuAD) and ROUGE-L (Lin, 2004).

Both split the normalised text (`normalized.normalize`: lower case, no punctuation) on
whitespace. Two empty texts agree perfectly (1.0); one empty text against a non-empty one scores 0.
"""

from __future__ import annotations

from collections import Counter

from tunery.graders.normalized import normalize


def _words(text: str) -> list[str]:
    return normalize(text).split()


def _f_measure(overlap: int, n_output: int, n_reference: int) -> float:
    if n_output == 0 and n_reference == 0:
        return 1.0
    if overlap == 0:
        return 0.0
    precision, recall = overlap / n_output, overlap / n_reference
    return 2 * precision * recall / (precision + recall)


def token_f1(output: str, reference: str) -> float:
    """Harmonic mean of word precision and recall, counting repeated words (SQuAD F1).

    "the cat sat" vs "the cat sat down": 3 shared words, P = 3/3, R = 3/4, F1 = 1.5/1.75 = 6/7.

    >>> round(token_f1("The cat sat.", "the cat sat down"), 6)
    0.857143
    """
    out, ref = _words(output), _words(reference)
    overlap = sum((Counter(out) & Counter(ref)).values())
    return _f_measure(overlap, len(out), len(ref))


def longest_common_subsequence(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, by the usual O(len(a)·len(b)) table, one row kept.

    >>> longest_common_subsequence("the cat sat on mat".split(), "the cat was on the mat".split())
    4
    """
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(output: str, reference: str) -> float:
    """ROUGE-L F-measure (β = 1, as the `rouge-score` package computes it).

    "the cat sat on mat" vs "the cat was on the mat": LCS = 4 (the cat on mat), P = 4/5, R = 4/6,
    F = 2·0.8·0.667/(0.8 + 0.667) = 8/11.

    >>> round(rouge_l("the cat sat on mat", "the cat was on the mat"), 6)
    0.727273
    """
    out, ref = _words(output), _words(reference)
    return _f_measure(longest_common_subsequence(out, ref), len(out), len(ref))
