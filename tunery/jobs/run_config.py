"""OpenAI's job fields → a `tunery train` run config (the keys of `tunery.train.config.RunConfig`).

    method.type (supervised | dpo | reinforcement) → method (sft | dpo | rft): `openai_type` in tunery/train/methods.py
    reinforcement.grader                    → rft.grader (the grader JSON the server wrote; `files`)
    hyperparameters.n_epochs, batch_size    → n_epochs, batch_size ("auto" passes through)
    hyperparameters.learning_rate_multiplier→ learning_rate_multiplier ("auto" → unset)
    the method's own hyperparameters        → its `openai_hyperparameters` keys, e.g. dpo beta → dpo.beta
                                              ("auto" → unset: the trainer's default)
    method.<type>.tunery                    → merged as is (adapter, lora, max_steps, ...)

The trainer keeps as many checkpoints as the job lists (OpenAI's three): the worker copies them
as they appear, but a fast trainer may rotate one away between two worker ticks.

A pure function, so the mapping is tested without a server.
"""

from __future__ import annotations

from pathlib import Path

from tunery.jobs.progress import KEEP_CHECKPOINTS
from tunery.train.config import merge, nested
from tunery.train.methods import BY_OPENAI_TYPE


def build_run_config(
    *,
    method: dict,
    seed: int,
    model: str,
    data: Path,
    validation: Path | None,
    output: Path,
    files: dict[str, Path] | None = None,
) -> dict:
    """The run config dict for a job whose (normalised) `method` is `{type, <type>: {...}}`.

    `files` are the method's own input files the server wrote for the job, by role (the
    reinforcement grader: {"grader": path}), placed at the method's `input_files` keys.
    """
    kind = method["type"]
    block = method[kind]
    hp = block["hyperparameters"]
    config: dict = {
        "model": model,
        "data": str(data),
        "output": str(output),
        "method": BY_OPENAI_TYPE[kind].name,
        "seed": seed,
        "n_epochs": hp["n_epochs"],
        "batch_size": hp["batch_size"],
        "keep_checkpoints": KEEP_CHECKPOINTS,
    }
    if validation is not None:
        config["validation"] = str(validation)
    if hp["learning_rate_multiplier"] != "auto":
        config["learning_rate_multiplier"] = hp["learning_rate_multiplier"]
    for name, key in BY_OPENAI_TYPE[kind].openai_hyperparameters.items():
        if hp.get(name, "auto") != "auto":
            config = merge(config, nested(key, hp[name]))
    for role, path in (files or {}).items():
        config = merge(config, nested(BY_OPENAI_TYPE[kind].input_files[role], str(path)))
    return merge(config, block.get("tunery") or {})
