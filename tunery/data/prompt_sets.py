"""The bundled general prompt sets, and the base model's own greedy answers to them.

Two sets of 310 prompts in six skills, written for tunery (built by tunery/eval/general_prompts.py):

* `general.jsonl`: the yardstick of forgetting (tunery/eval/forgetting.py);
* `replay.jsonl`: other prompts from the same templates, mixed into training as replay
  (tunery/train/replay.py). Kept apart, so the measure never sees what replay trained on.

`base_answers` is the one place the base model answers a set: greedily, each prompt once per base
model, cached under $TUNERY_HOME/cache/forgetting/ (one file per set, keyed by the base's weight
hash, holding the answers by prompt line). A caller asks for the prompts it needs (a sample per
skill, or the lines a replay run draws); only those not cached yet are generated, and the cache
grows by them, so every later comparison or run on that base reads instead of generating.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

PROMPT_SETS = ("general", "replay")
MAX_NEW_TOKENS = 64  # enough of each answer to see its distribution; not whole essays


def load_prompt_set(name: str = "general") -> list[dict]:
    """A bundled prompt set: `general` (the measure) or `replay` (training), each line {skill, messages}."""
    if name not in PROMPT_SETS:
        raise ValueError(f"no prompt set {name!r}; the sets are {', '.join(PROMPT_SETS)}")
    text = resources.files("tunery.data").joinpath(f"{name}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def first_per_skill(rows: Sequence, per_skill: int | None, skill=lambda row: row.skill) -> list:
    """The first `per_skill` rows of each skill, in file order; all of them when `per_skill` is None.

    A smaller sample keeps every skill in the measure at a wider interval: the quick check a test or
    a demo wants, where the full sets cost minutes of generation.
    """
    if per_skill is None:
        return list(rows)
    if per_skill < 1:
        raise ValueError(f"per_skill must be 1 or more, got {per_skill}")
    seen: dict[str, int] = {}
    kept = []
    for row in rows:
        seen[skill(row)] = seen.get(skill(row), 0) + 1
        if seen[skill(row)] <= per_skill:
            kept.append(row)
    return kept


def cached_answers(
    model_dir, name: str = "general", *, per_skill: int | None = None, lines: Sequence[int] | None = None
) -> list[dict] | None:
    """The base model's answers to the chosen prompts as `base_answers` returns them, if every one
    of them is cached; else None."""
    prompts = _chosen(name, per_skill, lines)
    known = cached_lines(model_dir, name)
    if any(p["line"] not in known for p in prompts):
        return None
    return [_row(p, known[p["line"]]) for p in prompts]


def cached_lines(model_dir, name: str = "general") -> dict[int, dict]:
    """Every answer of the base model in `model_dir` cached for a set: prompt line → {answer, finish_reason}."""
    path = cache_file(model_dir, name)
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    # A cache written before answers were kept by line holds the whole set, one answer per line in order.
    return {row.get("line", i): row for i, row in enumerate(rows, 1)}


def base_answers(
    generator,
    name: str = "general",
    *,
    per_skill: int | None = None,
    lines: Sequence[int] | None = None,
    log=None,
    progress=None,
) -> list[dict]:
    """Each chosen prompt of a set with the base model's greedy answer: {skill, messages, line, answer, finish_reason}.

    Only the prompts whose answers are not cached yet are generated, and the cache is extended by
    them: a run that needs 20 answers pays for 20 (seconds), not for the whole set (minutes), and a
    later run that needs more generates only the difference.

    Args:
        generator: a `tunery.inference.Generator` on the base model (no adapter is used).
        per_skill: only the first N prompts of each skill.
        lines: only these prompts (1-based lines of `<name>.jsonl`), in this order; not with per_skill.
        log: called with one line when the base model has to answer.
        progress: called as progress(done, total) while the answers come in.
    Returns the rows in file order (or in the order of `lines`); `line` is the prompt's 1-based line
    in `<name>.jsonl`; `finish_reason` is "stop" for an answer that ended by itself, "length" for
    one cut at MAX_NEW_TOKENS (None in caches written before it was recorded).
    """
    from tunery.fsio import atomic_write

    prompts = _chosen(name, per_skill, lines)
    known = cached_lines(generator.model_dir, name)
    missing = [p for p in prompts if p["line"] not in known]
    if missing:
        if log:
            log(
                f"the base model answers {len(missing)} prompt{'s' * (len(missing) != 1)} of {name}.jsonl "
                f"({len(known)} already cached for this base model)"
            )
        completions = generator.generate(
            [p["messages"] for p in missing], max_new_tokens=MAX_NEW_TOKENS, batch_size=32, on_progress=progress
        )
        new = {
            p["line"]: {"line": p["line"], "answer": c.text, "finish_reason": c.finish_reason}
            for p, c in zip(missing, completions, strict=True)
        }
        # Read again before writing: another run on this base may have added answers meanwhile.
        known = {**cached_lines(generator.model_dir, name), **new}
        body = "".join(json.dumps({**known[line], "line": line}, ensure_ascii=False) + "\n" for line in sorted(known))
        atomic_write(cache_file(generator.model_dir, name), body)
    return [_row(p, known[p["line"]]) for p in prompts]


def cache_file(model_dir, name: str = "general") -> Path:
    """Where the answers of the base model in `model_dir` to a set are cached: one JSON line
    {line, answer, finish_reason} per answered prompt, by line."""
    from tunery.home import tunery_home
    from tunery.models import weights_hash

    key = f"{name}-{weights_hash(Path(model_dir))[:16]}-{MAX_NEW_TOKENS}"
    return tunery_home() / "cache" / "forgetting" / f"{key}.jsonl"


def numbered_prompts(name: str = "general") -> list[dict]:
    """A set's prompts, each with its 1-based `line` in `<name>.jsonl`."""
    return [{**prompt, "line": line} for line, prompt in enumerate(load_prompt_set(name), 1)]


def _chosen(name: str, per_skill: int | None, lines: Sequence[int] | None) -> list[dict]:
    """The prompts of a set that a caller asked for: all, the first N of each skill, or these lines."""
    numbered = numbered_prompts(name)
    if lines is not None:
        if per_skill is not None:
            raise ValueError("choose prompts by per_skill or by lines, not both")
        bad = [line for line in lines if not 1 <= line <= len(numbered)]
        if bad:
            raise ValueError(f"{name}.jsonl has lines 1..{len(numbered)}, not {bad[0]}")
        return [numbered[line - 1] for line in lines]
    return first_per_skill(numbered, per_skill, skill=lambda p: p["skill"])


def _row(prompt: dict, answer: dict) -> dict:
    return {**prompt, "answer": answer["answer"], "finish_reason": answer.get("finish_reason")}
