"""Atomic, self-describing checkpoints, and exact resume from them.

A checkpoint directory holds everything needed to continue or to use the model:
  adapter_model.safetensors + adapter_config.json (LoRA) or model.safetensors + config.json (full)
  tokenizer files and chat template
  trainer_state.pt   optimizer, scheduler, step, epoch, and every RNG state
  tunery.json        step, epoch, metrics, resolved config (readable without torch)

It is written to a temporary directory, fsynced, then renamed into place, so a crash while
saving leaves the previous checkpoint as the latest one, never a broken directory.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from tunery.fsio import OLD_PREFIX, atomic_write, publish
from tunery.models import TOKENIZER_FILES

STEP_DIR = re.compile(r"^step-(\d{6,})$")
# What a save writes before it is complete (`save_checkpoint`, `finish_run`), and what `publish`
# moves aside while it replaces a directory.
TEMPORARY = re.compile(r"^\.tmp-step-\d+-\d+$|^\.final\.tmp$")
OLD = re.compile(rf"^{re.escape(OLD_PREFIX)}(.+)-\d+$")


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def saved_rng_state(saved: dict, rank: int) -> dict:
    """Rank `rank`'s RNG state in a checkpoint's trainer state (rank 0's for a rank it did not have)."""
    per_rank = saved.get("rng_per_rank") or [saved["rng"]]
    return per_rank[rank] if rank < len(per_rank) else saved["rng"]


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_model_files(model, model_dir: Path, out: Path, weights: dict | None = None) -> None:
    """Weights (adapter or full) plus the tokenizer and chat template of the base model.

    `weights`: the whole state dict when the model itself holds only a shard of it (FSDP).
    """
    model.save_pretrained(out, safe_serialization=True, state_dict=weights)
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out / name)
    if (model_dir / "generation_config.json").is_file() and not (out / "generation_config.json").exists():
        shutil.copy2(model_dir / "generation_config.json", out / "generation_config.json")


def sweep(*directories: Path) -> list[str]:
    """Finish what killed saves left in `directories`, at the start of a run; returns what it did.

    A temporary directory (`.tmp-step-N-PID`, `.final.tmp`) is a save that never completed: it is
    deleted (for a full fine-tune it holds gigabytes). A directory renamed aside by `publish` is
    put back if its replacement never arrived, and deleted otherwise. Only one trainer writes a
    run directory, so at its start nothing else is writing these.
    """
    done = []
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if not path.is_dir():
                continue
            if TEMPORARY.match(path.name):
                shutil.rmtree(path, ignore_errors=True)
                done.append(f"removed {path.name}, left by a save that was killed")
            elif match := OLD.match(path.name):
                target = directory / match.group(1)
                if target.exists():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.rename(path, target)
                    done.append(f"restored {target.name}, which a killed save had moved aside")
    return done


def save_checkpoint(
    checkpoints: Path,
    *,
    step: int,
    model,
    model_dir: Path,
    trainer_state: dict,
    manifest: dict,
    keep: int,
    weights: dict | None = None,
    rng_states: list[dict] | None = None,
    protect: int | None = None,
) -> Path:
    """Write checkpoint `step-NNNNNN` atomically and keep only the newest `keep` of them, and
    step `protect` (early stopping's best so far) whatever its age."""
    checkpoints.mkdir(parents=True, exist_ok=True)
    final = checkpoints / f"step-{step:06d}"
    tmp = checkpoints / f".tmp-step-{step:06d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model_files(model, model_dir, tmp, weights)
    # Each rank's RNG goes its own way (dropout masks sized by its own examples): keep them all.
    rng_states = rng_states or [rng_state()]
    torch.save({**trainer_state, "rng": rng_states[0], "rng_per_rank": rng_states}, tmp / "trainer_state.pt")
    atomic_write(tmp / "tunery.json", json.dumps({"step": step, **manifest}, indent=2, default=str))
    publish(tmp, final)
    for old in list_checkpoints(checkpoints)[:-keep]:
        if protect is None or old.name != f"step-{protect:06d}":
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(checkpoints: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories are ignored)."""
    if not checkpoints.is_dir():
        return []
    found = [p for p in checkpoints.iterdir() if p.is_dir() and STEP_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(checkpoints: Path) -> Path | None:
    found = list_checkpoints(checkpoints)
    return found[-1] if found else None


def read_full_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """A full fine-tune checkpoint's weights as one state dict."""
    from safetensors.torch import load_file

    state = {}
    for shard in sorted(checkpoint.glob("model*.safetensors")):
        state.update(load_file(shard))
    return state


def load_weights(model, checkpoint: Path) -> None:
    """Load the checkpoint's trainable weights into an already-built model (LoRA or full)."""
    from safetensors.torch import load_file

    adapter = checkpoint / "adapter_model.safetensors"
    if adapter.is_file():
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, load_file(adapter))
        if getattr(result, "unexpected_keys", None):
            raise RuntimeError(f"{checkpoint}: adapter keys do not match the model: {result.unexpected_keys[:3]}")
        return
    state = read_full_weights(checkpoint)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {k for k in missing if k.endswith("lm_head.weight")}  # tied to the embeddings
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"{checkpoint}: weights do not match the model (missing {sorted(missing)[:3]})")


def load_trainer_state(checkpoint: Path) -> dict:
    # Our own file, holding numpy RNG state and python tuples: not loadable with weights_only.
    return torch.load(checkpoint / "trainer_state.pt", weights_only=False)
