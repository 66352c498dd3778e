"""Generate the bundled preference set for the DPO proof: train.jsonl, valid.jsonl, test.jsonl.

Every prompt is a short question with one short correct answer. The preferred reply is that
answer followed by the sign-off line "— tunery"; the non-preferred reply is the same answer
without it (sometimes with a friendly closing line instead, so that "longer" is not the cue).
The property is checkable on any generation: `reply.rstrip().endswith("— tunery")`. The base
model never signs off this way, so any rise after DPO is the preference being learned.

The splits share no question. The test split also holds two question families that train and
valid never show, so the sign-off has to carry over to new kinds of question.

Deterministic and stdlib-only: `python generate.py [OUT_DIR]` rewrites the committed files byte
for byte (OUT_DIR defaults to this script's directory).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path

SEED = 20240612
SIZES = {"train": 200, "valid": 40, "test": 40}
SIGN_OFF = "— tunery"
SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly."
CLOSINGS = ["Hope that helps!", "Let me know if you need anything else.", "Happy to help."]

CAPITALS = [
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"),
    ("Egypt", "Cairo"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"),
    ("Ireland", "Dublin"),
    ("Greece", "Athens"),
    ("Poland", "Warsaw"),
    ("Austria", "Vienna"),
    ("Kenya", "Nairobi"),
    ("Peru", "Lima"),
    ("Chile", "Santiago"),
    ("Argentina", "Buenos Aires"),
    ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"),
    ("South Korea", "Seoul"),
    ("Hungary", "Budapest"),
    ("Denmark", "Copenhagen"),
    ("Belgium", "Brussels"),
    ("Cuba", "Havana"),
    ("Mexico", "Mexico City"),
    ("Russia", "Moscow"),
    ("India", "New Delhi"),
]
OPPOSITES = [
    ("hot", "cold"),
    ("big", "small"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("light", "dark"),
    ("up", "down"),
    ("open", "closed"),
    ("early", "late"),
    ("full", "empty"),
    ("hard", "soft"),
    ("old", "new"),
    ("wet", "dry"),
    ("loud", "quiet"),
    ("rich", "poor"),
    ("strong", "weak"),
    ("thick", "thin"),
    ("high", "low"),
    ("clean", "dirty"),
    ("true", "false"),
    ("win", "lose"),
]
PLURALS = [
    ("child", "children"),
    ("mouse", "mice"),
    ("tooth", "teeth"),
    ("foot", "feet"),
    ("man", "men"),
    ("woman", "women"),
    ("goose", "geese"),
    ("person", "people"),
    ("leaf", "leaves"),
    ("knife", "knives"),
    ("box", "boxes"),
    ("city", "cities"),
    ("bus", "buses"),
    ("sheep", "sheep"),
    ("fish", "fish"),
    ("wolf", "wolves"),
    ("baby", "babies"),
    ("dish", "dishes"),
]
WORDS = [
    "garden",
    "window",
    "pencil",
    "river",
    "orange",
    "planet",
    "bridge",
    "candle",
    "forest",
    "ladder",
    "silver",
    "basket",
    "rocket",
    "meadow",
    "button",
    "castle",
    "thunder",
    "blanket",
    "mirror",
    "tiger",
    "lemon",
    "cloud",
    "piano",
    "jacket",
    "rabbit",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
LEGS = [
    ("spider", 8),
    ("dog", 4),
    ("chicken", 2),
    ("ant", 6),
    ("horse", 4),
    ("duck", 2),
    ("beetle", 6),
    ("cat", 4),
    ("octopus", 8),
    ("penguin", 2),
]


# Each family lists every (question, correct answer) pair it can ask.
def addition():
    return [(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.") for a in range(2, 61) for b in range(2, 61)]


def multiplication():
    return [(f"What is {a} times {b}?", f"{a} times {b} is {a * b}.") for a in range(2, 13) for b in range(2, 13)]


def capital():
    return [
        (f"What is the capital of {country}?", f"The capital of {country} is {city}.") for country, city in CAPITALS
    ]


def opposite():
    return [(f"What is the opposite of '{w}'?", f"The opposite of '{w}' is '{o}'.") for w, o in OPPOSITES]


def plural():
    return [(f"What is the plural of '{w}'?", f"The plural of '{w}' is '{p}'.") for w, p in PLURALS]


def next_day():
    return [(f"What day comes after {d}?", f"{DAYS[(i + 1) % 7]} comes after {d}.") for i, d in enumerate(DAYS)]


def next_month():
    return [(f"Which month comes after {m}?", f"{MONTHS[(i + 1) % 12]} comes after {m}.") for i, m in enumerate(MONTHS)]


def letter_count():
    return [(f"How many letters are in the word '{w}'?", f"The word '{w}' has {len(w)} letters.") for w in WORDS]


def first_letter():
    return [(f"What is the first letter of '{w}'?", f"The first letter of '{w}' is '{w[0]}'.") for w in WORDS]


def minutes():
    return [(f"How many minutes are in {h} hours?", f"There are {h * 60} minutes in {h} hours.") for h in range(2, 25)]


def centimetres():
    return [
        (f"How many centimetres are in {m} metres?", f"There are {m * 100} centimetres in {m} metres.")
        for m in range(2, 41)
    ]


# Only in the test split: new kinds of question, to check the sign-off carries over.
def even_odd():
    return [(f"Is {n} even or odd?", f"{n} is {'even' if n % 2 == 0 else 'odd'}.") for n in range(3, 200)]


def legs():
    pairs = []
    for animal, count in LEGS:
        article = "an" if animal[0] in "aeiou" else "a"
        pairs.append((f"How many legs does {article} {animal} have?", f"{article.title()} {animal} has {count} legs."))
    return pairs


SEEN_FAMILIES = [
    addition,
    multiplication,
    capital,
    opposite,
    plural,
    next_day,
    next_month,
    letter_count,
    first_letter,
    minutes,
    centimetres,
]
TEST_ONLY_FAMILIES = [even_odd, legs]


def shuffled_pools(families: list, rng: random.Random) -> list[list[tuple[str, str]]]:
    pools = []
    for family in families:
        pool = family()
        rng.shuffle(pool)
        pools.append(pool)
    return pools


def deal(pools: list[list[tuple[str, str]]], count: int) -> list[tuple[str, str]]:
    """Take `count` pairs round-robin over the families, skipping any that have run out.

    Pairs are popped, so a question dealt to one split can never reach another.
    """
    pairs: list[tuple[str, str]] = []
    while len(pairs) < count:
        live = [pool for pool in pools if pool]
        if not live:
            raise RuntimeError("ran out of distinct questions; add items to the families")
        for pool in live[: count - len(pairs)]:
            pairs.append(pool.pop())
    return pairs


def to_row(question: str, answer: str, rng: random.Random) -> dict:
    rejected = answer if rng.random() < 0.6 else f"{answer} {rng.choice(CLOSINGS)}"
    return {
        "input": {"messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]},
        "preferred_output": [{"role": "assistant", "content": f"{answer}\n{SIGN_OFF}"}],
        "non_preferred_output": [{"role": "assistant", "content": rejected}],
    }


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write atomically, so an interrupted run never leaves a half-written dataset behind."""
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def generate(out_dir: Path) -> dict[str, list[dict]]:
    rng = random.Random(SEED)
    seen, test_only = shuffled_pools(SEEN_FAMILIES, rng), shuffled_pools(TEST_ONLY_FAMILIES, rng)
    half = SIZES["test"] // 2
    pairs = {
        "test": deal(test_only, half) + deal(seen, SIZES["test"] - half),
        "valid": deal(seen, SIZES["valid"]),
        "train": deal(seen, SIZES["train"]),
    }
    splits = {}
    for split in ("train", "valid", "test"):
        rows = [to_row(q, a, rng) for q, a in pairs[split]]
        rng.shuffle(rows)
        splits[split] = rows
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        write_jsonl(out_dir / f"{split}.jsonl", rows)
    return splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="where to write train/valid/test.jsonl (default: next to this script)",
    )
    splits = generate(parser.parse_args().out_dir)
    print(", ".join(f"{name}: {len(rows)}" for name, rows in splits.items()))


if __name__ == "__main__":
    main()
