"""Input drift: have the prompts a model receives moved away from the prompts it was trained on?

A prompt's text is the content of its user messages (system prompts are left out: they are
usually one fixed string, and the assistant turns are not input). Four signals compare the
recent prompts with the training prompts:

    length_ks          Kolmogorov–Smirnov statistic between the two distributions of prompt
                       length in words (0 = identical, 1 = no overlap at all)
    vocabulary_js      Jensen–Shannon divergence (base 2, in [0, 1]) between the word unigram
                       distributions
    centroid_distance  1 − cosine between the mean MiniLM embeddings of the two sets
    far_share          share of recent prompts whose most similar training prompt is less
                       similar than the 5th percentile of training prompts' own nearest
                       neighbours (about 0.05 without drift)

Each of them is non-zero even without drift, by chance, and more so for small samples: forty
prompts never use the words of a thousand in the same proportions. So each signal is also
measured on `CALIBRATION_ROUNDS` random splits of the training prompts themselves (a held-out
sample of the same size as the recent prompts, against the rest), and only the excess over the
median of those, the noise floor, counts. The drift score is the largest excess relative to its
alert threshold:

    score = max over signals of  max(0, value − noise) / ALERT[signal]
    level = ok (score < 0.5) | warn (0.5 ≤ score < 1) | alert (score ≥ 1)

so a score of 1 means at least one signal moved by its full alert threshold beyond chance. The
thresholds (ALERT below; warn is half) were set on the bundled support-ticket data (300 training
prompts): held-out prompts drawn from the training file score about 0.1 (ok); the bundled test
split, the same intents in phrasings the training file never uses, scores about 0.7 (warn: the
far share sees the new wording); general-knowledge questions score 3.2 and the same tickets four
times longer 1.8 (alert). tests/monitor/test_drift.py holds the ok and alert cases.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field

ALERT = {"length_ks": 0.5, "vocabulary_js": 0.3, "centroid_distance": 0.25, "far_share": 0.75}
WARN_RATIO = 0.5  # warn at half the alert threshold
CALIBRATION_ROUNDS = 16
FAR_QUANTILE = 0.05
MAX_TEXTS = 2000  # per side: a bigger sample changes the statistics little and costs encoding time
_WORD = re.compile(r"\w+", re.UNICODE)


def prompt_text(messages: Sequence[dict]) -> str:
    """The user turns of a conversation, joined; text parts of multi-part contents included."""
    parts = []
    for message in messages:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(parts)


def words(text: str) -> list[str]:
    """Lower-cased word tokens.

    >>> words("My invoice is WRONG, again!")
    ['my', 'invoice', 'is', 'wrong', 'again']
    """
    return _WORD.findall(text.lower())


# -- the four statistics: pure functions, checked by hand in the tests -----------------------------


def ks_statistic(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sample Kolmogorov–Smirnov statistic: the largest gap between the two empirical CDFs."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(a, b).statistic)


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen–Shannon divergence in bits between two count (or probability) vectors, in [0, 1]."""
    from scipy.spatial.distance import jensenshannon

    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0 if p.sum() == q.sum() else 1.0
    return float(jensenshannon(p, q, base=2) ** 2)


def centroid_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 − cosine between the mean vectors of two sets of embeddings (rows)."""
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    norm = float(np.linalg.norm(ca) * np.linalg.norm(cb))
    return 1.0 - float(ca @ cb) / norm if norm else 0.0


def nearest_similarities(sample: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each unit-norm sample row, its largest cosine similarity to a reference row."""
    return (sample @ reference.T).max(axis=1)


def far_threshold(reference: np.ndarray, quantile: float = FAR_QUANTILE) -> float:
    """The `quantile` of the reference rows' similarity to their nearest *other* reference row."""
    sims = reference @ reference.T
    np.fill_diagonal(sims, -np.inf)
    return float(np.quantile(sims.max(axis=1), quantile))


def far_share(sample: np.ndarray, reference: np.ndarray) -> float:
    """Share of sample rows less similar to the reference than most reference rows are to each other."""
    return float((nearest_similarities(sample, reference) < far_threshold(reference)).mean())


# -- features, signals and calibration ---------------------------------------------------------


@dataclass(frozen=True)
class Features:
    """What the signals need of a set of prompts: lengths, word counts (sparse rows), embeddings."""

    lengths: np.ndarray
    counts: object  # scipy.sparse CSR matrix, one row per prompt over a shared vocabulary
    vectors: np.ndarray  # unit-norm MiniLM embeddings, one row per prompt

    def take(self, index: np.ndarray) -> Features:
        return Features(self.lengths[index], self.counts[index], self.vectors[index])

    def __len__(self) -> int:
        return len(self.lengths)


def signals(reference: Features, sample: Features) -> dict[str, float]:
    return {
        "length_ks": ks_statistic(reference.lengths, sample.lengths),
        "vocabulary_js": js_divergence(
            np.asarray(reference.counts.sum(axis=0)).ravel(), np.asarray(sample.counts.sum(axis=0)).ravel()
        ),
        "centroid_distance": centroid_distance(reference.vectors, sample.vectors),
        "far_share": far_share(sample.vectors, reference.vectors) if len(reference) > 1 else 0.0,
    }


def noise_floor(reference: Features, sample_size: int, *, rounds: int = CALIBRATION_ROUNDS, seed: int = 0) -> dict:
    """Median of each signal over random splits of the reference into a sample and the rest."""
    size = min(sample_size, len(reference) // 2)
    if size < 2:
        return dict.fromkeys(ALERT, 0.0)
    rng = np.random.default_rng(seed)
    measured = []
    for _ in range(rounds):
        order = rng.permutation(len(reference))
        measured.append(signals(reference.take(order[size:]), reference.take(order[:size])))
    return {name: float(np.median([m[name] for m in measured])) for name in ALERT}


def drift_score(observed: dict[str, float], noise: dict[str, float]) -> float:
    """max over signals of max(0, value − noise) / ALERT[signal]: 1 = a signal beyond chance by its
    full alert threshold."""
    return max(max(0.0, observed[name] - noise[name]) / ALERT[name] for name in ALERT)


def level_of(score: float) -> str:
    """ok below WARN_RATIO, warn below 1, alert from 1.

    >>> level_of(0.2), level_of(0.5), level_of(1.0)
    ('ok', 'warn', 'alert')
    """
    return "alert" if score >= 1.0 else "warn" if score >= WARN_RATIO else "ok"


# -- the report --------------------------------------------------------------------------------


class Signal(BaseModel):
    value: float = Field(description="measured between the training prompts and the recent prompts")
    noise: float = Field(description="median of the same measure between random halves of the training prompts")
    excess: float = Field(description="max(0, value − noise)")
    alert_at: float = Field(description="excess at which this signal alone raises an alert (warn at half)")
    level: str


class FarPrompt(BaseModel):
    text: str
    similarity: float = Field(description="cosine to the most similar training prompt")
    nearest_training: str


class DriftReport(BaseModel):
    model: str
    train_prompts: int
    recent_prompts: int
    signals: dict[str, Signal]
    score: float
    level: str
    mean_words: dict[str, float] = Field(description="mean prompt length in words: train, recent")
    far_threshold: float = Field(description="similarity below which a recent prompt counts as far")
    most_distant: list[FarPrompt]
    notes: list[str] = Field(default_factory=list)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


def featurize(groups: Sequence[Sequence[str]], vectors: Sequence[np.ndarray]) -> list[Features]:
    """Features of each group of texts, with word counts over one vocabulary shared by all groups."""
    from scipy.sparse import csr_matrix

    vocabulary: dict[str, int] = {}
    tokenized = [[words(text) for text in texts] for texts in groups]
    for group in tokenized:
        for tokens in group:
            for token in tokens:
                vocabulary.setdefault(token, len(vocabulary))
    found = []
    for group, group_vectors in zip(tokenized, vectors, strict=True):
        rows = [i for i, tokens in enumerate(group) for _ in tokens]
        cols = [vocabulary[token] for tokens in group for token in tokens]
        counts = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(group), max(1, len(vocabulary))))
        found.append(Features(np.asarray([len(t) for t in group], dtype=np.float64), counts, group_vectors))
    return found


def encode(texts: Sequence[str]) -> np.ndarray:
    """Unit-norm MiniLM embeddings, with the encoder the embedding grader loads (offline)."""
    from tunery.graders.embedding import load_encoder  # one loader for the package: it pins offline mode

    return np.asarray(load_encoder().encode(list(texts), batch_size=64, normalize_embeddings=True), dtype=np.float64)


def sample_texts(texts: Sequence[str], limit: int = MAX_TEXTS, seed: int = 0) -> list[str]:
    """At most `limit` texts, a seeded random sample (order kept) when there are more."""
    if len(texts) <= limit:
        return list(texts)
    keep = np.sort(np.random.default_rng(seed).choice(len(texts), size=limit, replace=False))
    return [texts[i] for i in keep]


def measure_drift(model: str, train: Sequence[str], recent: Sequence[str], *, examples: int = 5) -> DriftReport:
    """Compare recent prompts with training prompts (texts, see `prompt_text`).

    Raises:
        ValueError: either side is empty.
    """
    if not train or not recent:
        raise ValueError("drift needs at least one training prompt and one recent prompt")
    notes = []
    if len(recent) > MAX_TEXTS:
        notes.append(f"the newest {MAX_TEXTS} of {len(recent)} recent prompts were used")
        recent = list(recent)[-MAX_TEXTS:]
    if len(train) > MAX_TEXTS:
        notes.append(f"a random {MAX_TEXTS} of {len(train)} training prompts were used")
        train = sample_texts(train)
    if len(recent) < 20:
        notes.append(f"only {len(recent)} recent prompts: treat the score as a hint, not a measurement")
    vectors = encode([*train, *recent])
    ref, new = featurize([train, recent], [vectors[: len(train)], vectors[len(train) :]])

    observed = signals(ref, new)
    noise = noise_floor(ref, len(new))
    table = {}
    for name, value in observed.items():
        excess = max(0.0, value - noise[name])
        table[name] = Signal(
            value=value, noise=noise[name], excess=excess, alert_at=ALERT[name], level=level_of(excess / ALERT[name])
        )
    score = drift_score(observed, noise)

    sims = new.vectors @ ref.vectors.T
    nearest, best = sims.argmax(axis=1), sims.max(axis=1)
    order = np.argsort(best, kind="stable")[:examples]
    most_distant = [
        FarPrompt(text=recent[i], similarity=round(float(best[i]), 4), nearest_training=train[nearest[i]])
        for i in order
    ]
    return DriftReport(
        model=model,
        train_prompts=len(train),
        recent_prompts=len(recent),
        signals=table,
        score=round(score, 4),
        level=level_of(score),
        mean_words={"train": float(ref.lengths.mean()), "recent": float(new.lengths.mean())},
        far_threshold=far_threshold(ref.vectors) if len(ref) > 1 else math.nan,
        most_distant=most_distant,
        notes=notes,
    )
