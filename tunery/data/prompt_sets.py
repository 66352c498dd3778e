"""The bundled general prompt sets, and the base model's own greedy answers to them.

Two sets of 310 prompts in six skills, written for tunery (built by tunery/eval/general_prompts.py):

* `general.jsonl`: the yardstick of forgetting (tunery/eval/forgetting.py);
* `replay.jsonl`: other prompts from the same templates, mixed into training as replay
  (tunery/train/replay.py). Kept apart, so the measure never sees what replay trained on.

`base_answers` is the one place the base model answers a set: greedily, once per base model,
cached under $TUNERY_HOME/cache/forgetting/ and keyed by the base's weight hash, so every later
comparison or run on that base reads the answers instead of generating them.
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


def cached_answers(model_dir, name: str = "general", *, per_skill: int | None = None) -> list[dict] | None:
    """The base model's answers to a set as `base_answers` returns them, if they are cached; else None."""
    prompts, path = _prompts_and_cache(model_dir, name, per_skill)
    if not path.is_file():
        return None
    answers = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return _rows(prompts, answers)


def base_answers(
    generator, name: str = "general", *, per_skill: int | None = None, log=None, progress=None
) -> list[dict]:
    """Each prompt of a set with the base model's greedy answer: {skill, messages, line, answer, finish_reason}.

    Args:
        generator: a `tunery.inference.Generator` on the base model (no adapter is used).
        per_skill: only the first N prompts of each skill (cached apart from the whole set).
        log: called with one line when the base model has to answer (the first time on a base).
        progress: called as progress(done, total) while the answers come in.
    Returns the rows in file order; `line` is the prompt's 1-based line in `<name>.jsonl`;
    `finish_reason` is "stop" for an answer that ended by itself, "length" for one cut at
    MAX_NEW_TOKENS (None in caches written before it was recorded).
    """
    from tunery.fsio import atomic_write

    cached = cached_answers(generator.model_dir, name, per_skill=per_skill)
    if cached is not None:
        return cached
    prompts, path = _prompts_and_cache(generator.model_dir, name, per_skill)
    if log:
        log(f"the base model answers {len(prompts)} general prompts of {name}.jsonl (once per base model)")
    completions = generator.generate(
        [p["messages"] for p in prompts], max_new_tokens=MAX_NEW_TOKENS, batch_size=32, on_progress=progress
    )
    answers = [{"answer": c.text, "finish_reason": c.finish_reason} for c in completions]
    atomic_write(path, "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers))
    return _rows(prompts, answers)


def cache_file(model_dir, name: str = "general", *, per_skill: int | None = None) -> Path:
    """Where the answers of the base model in `model_dir` to a set are cached: one JSON line
    {answer, finish_reason} per prompt, in the order of the set."""
    from tunery.home import tunery_home
    from tunery.models import weights_hash

    sample = f"-first{per_skill}" if per_skill is not None else ""
    key = f"{name}-{weights_hash(Path(model_dir))[:16]}-{MAX_NEW_TOKENS}{sample}"
    return tunery_home() / "cache" / "forgetting" / f"{key}.jsonl"


def _prompts_and_cache(model_dir, name: str, per_skill: int | None) -> tuple[list[dict], Path]:
    """The set's prompts (numbered by line, sampled) and the cache file of their answers on this base."""
    numbered = [{**prompt, "line": line} for line, prompt in enumerate(load_prompt_set(name), 1)]
    prompts = first_per_skill(numbered, per_skill, skill=lambda p: p["skill"])
    return prompts, cache_file(model_dir, name, per_skill=per_skill)


def _rows(prompts: list[dict], answers: list[dict]) -> list[dict]:
    return [
        {**prompt, "answer": a["answer"], "finish_reason": a.get("finish_reason")}
        for prompt, a in zip(prompts, answers, strict=True)
    ]
