"""What is being evaluated: a base model, and optionally the fine-tuned model from a run.

A tuned model is named by a run directory (its `final/` is used) or by a model directory
directly. A directory with `adapter_config.json` is a PEFT adapter, applied on its base; one
with `config.json` alone is a fully fine-tuned model. The base comes from `--model` when given,
otherwise from the run's `tunery.json` manifest (`base_model_path`, then `base_model`), then
from the adapter's own `base_model_name_or_path`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tunery.errors import TuneryError
from tunery.models import resolve_model

MANIFEST = "tunery.json"
TUNED = "tuned"  # the adapter name a tuned model is attached under


@dataclass(frozen=True)
class TunedModel:
    path: Path  # the adapter or model directory itself
    kind: Literal["lora", "full"]
    base: str | None  # the base model reference the run recorded, if any


def find_tuned(path: str | Path) -> TunedModel:
    """Locate the fine-tuned weights under a run directory or model directory.

    Raises:
        TuneryError: neither a run directory with `final/` nor an adapter or model directory.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise TuneryError(
            f"{path} is not a directory", hint="give a run directory (holding final/) or an adapter directory"
        )
    if (path / "final").is_dir():
        path = path / "final"
    if (path / "adapter_config.json").is_file():
        kind: Literal["lora", "full"] = "lora"
    elif (path / "config.json").is_file():
        kind = "full"
    else:
        raise TuneryError(
            f"{path} holds neither adapter_config.json nor config.json",
            hint="give a run directory whose training finished (it has final/), or a checkpoint directory",
        )
    return TunedModel(path=path.resolve(), kind=kind, base=_recorded_base(path))


def _recorded_base(path: Path) -> str | None:
    manifest = path / MANIFEST
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        local = data.get("base_model_path")
        if local and Path(local).is_dir():
            return str(local)
        if data.get("base_model"):
            return str(data["base_model"])
    config = path / "adapter_config.json"
    if config.is_file():
        return json.loads(config.read_text()).get("base_model_name_or_path")
    return None


def base_model_dir(model: str | None, tuned: TunedModel | None) -> Path:
    """The local directory of the base model: `model` if given, else the one the run recorded.

    Raises:
        TuneryError: no model was given and the tuned model does not record its base.
    """
    if model:
        return resolve_model(model)
    if tuned is not None and tuned.base:
        return resolve_model(tuned.base)
    raise TuneryError(
        "no base model: give --model" + ("" if tuned is None else f" ({tuned.path} does not record its base)"),
        hint="e.g. --model smollm2-135m-instruct",
    )


def attach_tuned(base, tuned: TunedModel, *, device: str):
    """The (generator, adapter name) pair that runs the tuned model.

    An adapter is attached to `base` (a Generator for its base model) as `TUNED`; a fully
    fine-tuned model gets a Generator of its own and needs no base.
    """
    if tuned.kind == "full":
        from tunery.inference import Generator

        return Generator(tuned.path, device=device), None
    base.add_adapter(TUNED, tuned.path)
    return base, TUNED
