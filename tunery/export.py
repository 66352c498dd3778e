"""Export a finished run as a standalone model, or in the layout vLLM serves.

`merge` (in tunery/models.py, beside `load_model`) writes base + adapter merged into one model
directory that loads with plain `AutoModelForCausalLM.from_pretrained`, needs neither peft nor
tunery, and carries the tokenizer, chat template and the run's manifest.

`export_vllm` writes what `vllm serve` loads: either a merged model directory, or a base model
directory plus a LoRA adapter directory (served with `--enable-lora --lora-modules NAME=PATH`),
and returns the exact `vllm serve` command. vLLM itself stays an optional dependency: the layout
follows what vLLM's loader reads (`vllm/lora/peft_helper.py`, `vllm/lora/lora_model.py`), and
the configs are made readable by transformers 4.x, which vLLM pins (`transformers < 5`), as well
as by the transformers 5 that tunery trains with.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tunery.errors import TuneryError
from tunery.models import base_model_dir, final_dir, merge, run_manifest

# vLLM accepts only these for `--max-lora-rank` (vllm.config.lora.MaxLoRARanks).
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# The attention and MLP projections, which every vLLM version applies LoRA to (it fuses q/k/v
# and gate/up itself). Embedding and LM-head adapters are not loaded by every version.
VLLM_LORA_MODULES = frozenset(
    {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "qkv_proj", "gate_up_proj"}
)
WEIGHT_FILES = ("*.safetensors", "model.safetensors.index.json")
MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "chat_template.jinja", "special_tokens_map.json")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# vLLM


@dataclass(frozen=True)
class Exported:
    """What an export wrote, and the command that serves or loads it (empty when there is none)."""

    path: Path  # the directory (or .gguf file) written
    command: list[str]  # e.g. the `vllm serve ...` or `ollama create ...` argv
    kind: Literal["adapter", "merged", "gguf", "ollama"]

    @property
    def shell_command(self) -> str:
        return shlex.join(self.command)


def vllm_max_lora_rank(r: int) -> int:
    """The smallest `--max-lora-rank` vLLM accepts that holds rank `r`.

    Raises:
        TuneryError: `r` is above vLLM's largest allowed rank.
    """
    for allowed in VLLM_MAX_LORA_RANKS:
        if r <= allowed:
            return allowed
    raise TuneryError(f"LoRA rank {r} is above vLLM's largest --max-lora-rank ({VLLM_MAX_LORA_RANKS[-1]})")


def lora_module_of(tensor_name: str) -> str | None:
    """The adapted module's short name for a PEFT LoRA tensor, or None for any other tensor.

    `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` → `q_proj`;
    `...embed_tokens.lora_embedding_A` → `embed_tokens`.
    """
    parts = tensor_name.split(".")
    if len(parts) >= 3 and parts[-1] == "weight" and parts[-2] in ("lora_A", "lora_B"):
        return parts[-3]
    if len(parts) >= 2 and parts[-1] in ("lora_embedding_A", "lora_embedding_B"):
        return parts[-2]
    return None


def vllm_adapter_problems(adapter_config: dict, tensor_names: list[str]) -> list[str]:
    """Why vLLM cannot serve this adapter as it is (empty when it can).

    Follows vLLM's loader: it reads r, lora_alpha, use_rslora and target_modules, rejects
    modules_to_save and DoRA, has no per-module ranks or alphas, and its accepted ranks top out
    at 512. Adapters on anything but the attention/MLP projections are refused too (see
    VLLM_LORA_MODULES).
    """
    problems = []
    if adapter_config.get("peft_type", "LORA") != "LORA":
        problems.append(f"it is a {adapter_config['peft_type']} adapter; vLLM serves LoRA adapters only")
    if adapter_config.get("modules_to_save"):
        problems.append(
            f"it trains full copies of {sorted(adapter_config['modules_to_save'])} (modules_to_save), "
            "which vLLM does not load"
        )
    if adapter_config.get("use_dora"):
        problems.append("it is a DoRA adapter, which vLLM does not load")
    if adapter_config.get("bias", "none") != "none" or adapter_config.get("lora_bias"):
        problems.append("it trains biases, which vLLM loads only behind an opt-in flag not every version has")
    if adapter_config.get("rank_pattern") or adapter_config.get("alpha_pattern"):
        problems.append("it sets per-module ranks or alphas (rank_pattern/alpha_pattern); vLLM uses one of each")
    if int(adapter_config.get("r", 0)) > VLLM_MAX_LORA_RANKS[-1]:
        problems.append(f"its rank {adapter_config['r']} is above vLLM's largest ({VLLM_MAX_LORA_RANKS[-1]})")
    modules = {lora_module_of(name) for name in tensor_names}
    others = sorted(name for name in tensor_names if lora_module_of(name) is None)
    if others:
        problems.append(f"it holds tensors that are not LoRA matrices, e.g. {others[0]}")
    outside = sorted(m for m in modules if m is not None and m not in VLLM_LORA_MODULES)
    if outside:
        problems.append(
            f"it adapts {', '.join(outside)}; vLLM applies adapters to the attention and MLP projections only"
        )
    return problems


def portable_config(config: dict) -> dict:
    """config.json that transformers 4.x (vLLM's) reads the same as transformers 5 (ours).

    transformers 5 writes the RoPE settings as `rope_parameters` and the dtype as `dtype`;
    4.x reads `rope_theta`/`rope_scaling` and `torch_dtype`, and would silently fall back to
    its default rope_theta (10000) without them. Both spellings are written; 5 ignores the old.
    Per-layer-type RoPE (a dict of dicts) has no flat 4.x spelling and is left as it is.
    """
    out = dict(config)
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope and "rope_theta" not in config:
        out["rope_theta"] = rope["rope_theta"]
        scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
        if scaling.get("rope_type", "default") != "default" and "rope_scaling" not in config:
            out["rope_scaling"] = scaling
    if "dtype" in config and "torch_dtype" not in config:
        out["torch_dtype"] = config["dtype"]
    return out


def portable_tokenizer_config(tokenizer_config: dict, chat_template: str | None) -> dict:
    """tokenizer_config.json that transformers 4.x loads: its fast-tokenizer class name, and the
    chat template inline (older readers do not look for chat_template.jinja)."""
    out = dict(tokenizer_config)
    if out.get("tokenizer_class") in (None, "TokenizersBackend"):  # the transformers 5 name
        out["tokenizer_class"] = "PreTrainedTokenizerFast"
    if chat_template is not None and "chat_template" not in out:
        out["chat_template"] = chat_template
    return out


def make_portable(model_dir: Path) -> None:
    """Rewrite a model directory's configs so vLLM runs it as tunery does.

    config.json and tokenizer_config.json take the portable form (above), with the chat
    template tunery renders with (ChatML when the model has none); generation_config.json lists
    every token tunery stops on (vLLM stops on the tokenizer's EOS plus these).
    """
    from tunery.data.render import ChatTokenizer

    if not (model_dir / "tokenizer_config.json").is_file():
        raise TuneryError(f"{model_dir} has no tokenizer_config.json, so vLLM could not load its tokenizer")
    chat = ChatTokenizer.from_dir(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    _write_json(model_dir / "config.json", portable_config(config))
    tokenizer_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    _write_json(model_dir / "tokenizer_config.json", portable_tokenizer_config(tokenizer_config, chat.chat_template))
    generation = model_dir / "generation_config.json"
    generation_config = json.loads(generation.read_text()) if generation.is_file() else {}
    stops = sorted(chat.stop_ids)
    _write_json(generation, {**generation_config, "eos_token_id": stops[0] if len(stops) == 1 else stops})


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link big weight files (no extra disk); copy when the link cannot be made."""
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(src, dst)


def _tensor_names(adapter_dir: Path) -> list[str]:
    from safetensors import safe_open

    path = adapter_dir / "adapter_model.safetensors"
    if not path.is_file():
        raise TuneryError(
            f"{adapter_dir} has no adapter_model.safetensors; vLLM loads adapters in safetensors form",
            hint="re-save the adapter with safe_serialization=True, or export it with --merge",
        )
    with safe_open(str(path), framework="numpy") as fh:
        return list(fh.keys())


def vllm_adapter_config(adapter_config: dict, base_path: Path) -> dict:
    """The standard PEFT LoRA fields only: what vLLM reads, and what older peft versions load
    without tripping over fields added since."""
    target = adapter_config["target_modules"]
    return {
        "peft_type": "LORA",
        "task_type": adapter_config.get("task_type") or "CAUSAL_LM",
        "base_model_name_or_path": str(base_path),
        "r": adapter_config["r"],
        "lora_alpha": adapter_config["lora_alpha"],
        "lora_dropout": adapter_config.get("lora_dropout", 0.0),
        "target_modules": sorted(target) if isinstance(target, list) else target,
        "bias": "none",
        "modules_to_save": None,
        "use_rslora": bool(adapter_config.get("use_rslora", False)),
        "use_dora": False,
        "fan_in_fan_out": bool(adapter_config.get("fan_in_fan_out", False)),
        "inference_mode": True,
        "init_lora_weights": True,
    }


def _write_adapter_layout(source: Path, staging: Path, output: Path, name: str, *, run: str | Path) -> list[str]:
    """`staging/base/` and `staging/adapter/` (to be published as `output`); the serve command.

    Raises:
        TuneryError: the adapter is one vLLM cannot load.
    """
    adapter_config = json.loads((source / "adapter_config.json").read_text())
    problems = vllm_adapter_problems(adapter_config, _tensor_names(source))
    if problems:
        raise TuneryError(
            f"vLLM cannot serve {source} as a LoRA adapter: " + "; ".join(problems),
            hint=f"export it merged into the base weights instead: tunery export {run} --format vllm "
            f"--merge --output {output}",
        )
    base_src = base_model_dir(source, run_manifest(source))
    base, adapter = staging / "base", staging / "adapter"
    base.mkdir(parents=True)
    adapter.mkdir()
    for pattern in WEIGHT_FILES:
        for f in base_src.glob(pattern):
            _link_or_copy(f, base / f.name)
    for file in MODEL_FILES:
        if (base_src / file).is_file():
            shutil.copy2(base_src / file, base / file)
    make_portable(base)
    config = vllm_adapter_config(adapter_config, output / "base")
    (adapter / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.copy2(source / "adapter_model.safetensors", adapter / "adapter_model.safetensors")
    if (source / "tunery.json").is_file():
        shutil.copy2(source / "tunery.json", adapter / "tunery.json")
    return [
        "vllm", "serve", str(output / "base"), "--enable-lora",
        "--lora-modules", f"{name}={output / 'adapter'}",
        "--max-lora-rank", str(vllm_max_lora_rank(int(adapter_config["r"]))),
    ]  # fmt: skip


def export_vllm(run: str | Path, output: str | Path, *, merged: bool, name: str | None = None) -> Exported:
    """Write `run` in the layout vLLM serves, atomically, and return the command that serves it.

    Adapter (merged=False) → `output/base/` (the base model; its weights hard-linked where the
    filesystem allows, which is safe because tunery never rewrites a model file in place) and
    `output/adapter/`. Merged, or a full fine-tune → `output/` is one model directory.

    Raises:
        TuneryError: the adapter is one vLLM cannot load (the message names why; --merge fixes it).
    """
    from tunery.fsio import publish

    source = final_dir(run)
    output = Path(output).resolve()
    name = name or (source.parent.name if source.name == "final" else source.name)
    is_adapter = (source / "adapter_config.json").is_file()
    staging = output.with_name(f".{output.name}.vllm-tmp")
    shutil.rmtree(staging, ignore_errors=True)
    output.parent.mkdir(parents=True, exist_ok=True)

    try:
        if merged or not is_adapter:
            merge(source, staging)
            make_portable(staging)
            command, kind = ["vllm", "serve", str(output), "--served-model-name", name], "merged"
        else:
            command, kind = _write_adapter_layout(source, staging, output, name, run=run), "adapter"
        publish(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # only left behind by a failure
    return Exported(output, command, kind)
