"""Export a finished run as one GGUF file, the format llama.cpp, Ollama and LM Studio load.

The run is merged into its base (`tunery.export.merge`), and the merged model is written with the
`gguf` package the way llama.cpp's own converter (`convert_hf_to_gguf.py`) writes a Llama: tensor
names from gguf's name map, Q and K rows permuted into llama.cpp's rotary layout, the architecture
metadata, the tokenizer as "gpt2" BPE metadata and the chat template. Norms stay float32; the
matrices take the chosen type. What the writer cannot map (another architecture, rope scaling,
biases, a non-BPE tokenizer) is refused by name rather than written into a file that loads wrong.

For Ollama, a Modelfile is written beside the GGUF with the chat template in Ollama's Go template
syntax (for the template families recognised by rendering the model's own Jinja template), the
default system prompt and the stop tokens.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tunery.errors import TuneryError
from tunery.export import Exported, final_dir, merge

# --quant → the GGML type of the 2-D weights. These are the types the gguf package can *write*
# (its K-quants only read); q4_1 is what the embedded default model ships as.
QUANTS = ("f32", "f16", "q8_0", "q5_1", "q4_1", "q4_0")
ARCHITECTURES = {"LlamaForCausalLM": "llama"}
CONTROL, USER_DEFINED, NORMAL = 3, 4, 1  # llama.cpp token types


def export_gguf(
    run: str | Path, output: str | Path, *, quant: str = "f16", ollama: bool = False, name: str | None = None
) -> Exported:
    """Merge `run` and write `output` (a directory) holding `<name>.<quant>.gguf`, and for Ollama a
    `Modelfile`. Atomic: the directory appears whole or not at all.

    Returns:
        `Exported`; its command loads the export (`ollama create ...`, or llama.cpp's `llama-cli`).

    Raises:
        TuneryError: an unknown quant, or a model the GGUF writer cannot map (named).
    """
    from tunery.fsio import publish

    if quant not in QUANTS:
        raise TuneryError(f"unknown --quant {quant!r}", hint=f"one of {', '.join(QUANTS)}")
    source = final_dir(run)
    name = name or (source.parent.name if source.name == "final" else source.name)
    output = Path(output).resolve()
    staging = output.with_name(f".{output.name}.gguf-tmp")
    shutil.rmtree(staging, ignore_errors=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        merged = merge(source, staging / "merged")
        check_mappable(merged)
        file = staging / f"{name}.{quant}.gguf"
        template = write_gguf(merged, file, quant=quant, name=name)
        eos = _eos_token(merged)
        shutil.rmtree(merged)
        if ollama:
            (staging / "Modelfile").write_text(modelfile(file.name, template, eos))
            command = ["ollama", "create", name, "-f", str(output / "Modelfile")]
        else:
            command = ["llama-cli", "-m", str(output / file.name), "-cnv"]
        publish(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Exported(output / file.name, command, "ollama" if ollama else "gguf")


def check_mappable(model_dir: Path) -> None:
    """Refuse, by name, what this writer would not write faithfully.

    Raises:
        TuneryError: naming the architecture, config field or tokenizer part that cannot be mapped.
    """
    config = json.loads((model_dir / "config.json").read_text())
    archs = config.get("architectures") or ["(none)"]
    hint = "export it as a Hugging Face model (--merge) and convert it with llama.cpp's convert_hf_to_gguf.py"
    if archs[0] not in ARCHITECTURES:
        raise TuneryError(
            f"cannot write {archs[0]} as GGUF: this writer maps {', '.join(ARCHITECTURES)} only", hint=hint
        )
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", "default") != "default":
        raise TuneryError(f"cannot write rope scaling {rope.get('rope_type')!r} as GGUF (not mapped)", hint=hint)
    for flag in ("attention_bias", "mlp_bias"):
        if config.get(flag):
            raise TuneryError(f"cannot write a Llama with {flag}=true as GGUF (not mapped)", hint=hint)
    _tokenizer_pre(json.loads((model_dir / "tokenizer.json").read_text()))


def _tokenizer_pre(spec: dict) -> str:
    """llama.cpp's name for the pre-tokenizer, which decides how it splits text before BPE."""
    model = spec.get("model", {}).get("type")
    if model != "BPE":
        raise TuneryError(f"cannot write a {model} tokenizer as GGUF: this writer maps byte-level BPE only")
    pre = spec.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"  # SmolLM's: every digit its own token
    raise TuneryError(f"cannot write the pre-tokenizer {kinds} as GGUF: llama.cpp would split text differently")


def _permute(weights, heads: int):
    """llama.cpp's rotary layout: within each head, the rows of the two halves interleaved
    (convert_hf_to_gguf.py `LlamaModel.permute`; transformers' GGUF reader undoes it)."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_gguf(model_dir: Path, path: Path, *, quant: str, name: str) -> str | None:
    """Write the (merged, mappable) model at `model_dir` to `path`; return its chat template."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    from tunery.models import read_chat_template

    config = json.loads((model_dir / "config.json").read_text())
    layers, heads = config["num_hidden_layers"], config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    qtype = {"f32": "F32", "f16": "F16"}.get(quant, quant.upper())
    ggml_type = gguf.GGMLQuantizationType[qtype]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    rope = config.get("rope_parameters") or {}
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType[f"MOSTLY_{qtype}"] if quant != "f32" else gguf.LlamaFileType.ALL_F32)
    template = read_chat_template(model_dir)
    _add_tokenizer(writer, model_dir, config["vocab_size"], template)

    files = sorted(model_dir.glob("*.safetensors"))
    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            for key in fh.keys():
                if key == "lm_head.weight" and config.get("tie_word_embeddings"):
                    continue
                gguf_name = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if gguf_name is None:
                    raise TuneryError(f"cannot write tensor {key} as GGUF: no llama.cpp name for it")
                data = fh.get_tensor(key).float().numpy()
                if key.endswith("q_proj.weight"):
                    data = _permute(data, heads)
                elif key.endswith("k_proj.weight"):
                    data = _permute(data, kv_heads)
                _add_tensor(writer, gguf, gguf_name, np.ascontiguousarray(data), ggml_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return template


def _add_tensor(writer, gguf, name: str, data, ggml_type) -> None:
    """Norms (1-D) stay float32, as llama.cpp keeps them; matrices take the chosen type, or f16
    where a row is not a whole number of the type's blocks (llama.cpp's converter does the same)."""
    import numpy as np

    T = gguf.GGMLQuantizationType
    if data.ndim == 1 or ggml_type == T.F32:
        writer.add_tensor(name, data.astype(np.float32))
        return
    block, _ = gguf.GGML_QUANT_SIZES[ggml_type]
    if ggml_type == T.F16 or data.shape[-1] % block:
        writer.add_tensor(name, data.astype(np.float16))
        return
    writer.add_tensor(name, gguf.quants.quantize(data, ggml_type), raw_dtype=ggml_type)


def _add_tokenizer(writer, model_dir: Path, vocab_size: int, template: str | None) -> None:
    """The BPE vocabulary, merges, token types and special ids as llama.cpp's "gpt2" tokenizer."""
    spec = json.loads((model_dir / "tokenizer.json").read_text())
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    vocab = dict(spec["model"]["vocab"])
    added = {t["content"]: t for t in spec.get("added_tokens", [])}
    vocab.update({content: t["id"] for content, t in added.items()})
    by_id = {i: token for token, i in vocab.items()}
    tokens, types = [], []
    for i in range(vocab_size):  # the embedding may be padded beyond the tokenizer's vocabulary
        token = by_id.get(i, f"[PAD{i}]")
        tokens.append(token)
        types.append(
            (CONTROL if added[token]["special"] else USER_DEFINED) if token in added else NORMAL
        )  # fmt: skip
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_tokenizer_pre(spec))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)

    def token_id(key: str) -> int | None:
        value = config.get(key)
        value = value.get("content") if isinstance(value, dict) else value
        return vocab.get(value) if value else None

    for key, add in (("bos_token", writer.add_bos_token_id), ("eos_token", writer.add_eos_token_id),
                     ("unk_token", writer.add_unk_token_id), ("pad_token", writer.add_pad_token_id)):  # fmt: skip
        if token_id(key) is not None:
            add(token_id(key))
    writer.add_add_bos_token(bool(config.get("add_bos_token", False)))
    if template:
        writer.add_chat_template(template)


def _eos_token(model_dir: Path) -> list[str]:
    """The tokenizer's end-of-sequence string, a stop for Ollama whatever the template."""
    value = json.loads((model_dir / "tokenizer_config.json").read_text()).get("eos_token")
    value = value.get("content") if isinstance(value, dict) else value
    return [value] if value else []


# ---------------------------------------------------------------------------------------------
# Ollama


# Ollama's Go templates for the chat formats recognised here, and a Python rendering of each that
# must equal the model's own Jinja template on probe conversations before the Go template is used.
CHATML_GO = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


def _chatml(messages: list[dict]) -> str:
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


FAMILIES = {"chatml": (_chatml, CHATML_GO, ["<|im_end|>", "<|im_start|>"])}
PROBES = [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
    [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ],
]


def ollama_template(template: str | None) -> tuple[str, str | None, list[str]] | None:
    """(Go template, default system prompt, stop strings) when the Jinja template is a recognised
    family, rendered on probe conversations to be sure; None otherwise."""
    if not template:
        return None
    from transformers.utils.chat_template_utils import render_jinja_template

    def render(messages: list[dict]) -> str:
        rendered, _ = render_jinja_template([messages], chat_template=template, add_generation_prompt=True)
        return rendered[0]

    for python_render, go, stops in FAMILIES.values():
        try:
            if all(render(p) == python_render(p) for p in PROBES):
                bare = render([{"role": "user", "content": "Hi"}])
                default_system = None
                if bare != python_render([{"role": "user", "content": "Hi"}]):
                    # The template inserts a system prompt when there is none: find it.
                    for candidate in _system_candidates(bare):
                        with_it = [{"role": "system", "content": candidate}, {"role": "user", "content": "Hi"}]
                        if python_render(with_it) == bare:
                            default_system = candidate
                            break
                    else:
                        continue
                return go, default_system, stops
        except Exception:  # noqa: BLE001 - a third-party template that fails on a probe is not this family
            continue
    return None


def _system_candidates(rendered: str) -> list[str]:
    start = "<|im_start|>system\n"
    if rendered.startswith(start) and "<|im_end|>" in rendered:
        return [rendered[len(start) : rendered.index("<|im_end|>")]]
    return []


def modelfile(gguf_name: str, template: str | None, eos: list[str]) -> str:
    """The Modelfile for `ollama create`: the GGUF, the template, the default system prompt, stops."""
    lines = [f"FROM ./{gguf_name}"]
    family = ollama_template(template)
    if family is not None:
        go, system, stops = family
        lines.append(f'TEMPLATE """{go}"""')
        if system:
            lines.append(f'SYSTEM """{system}"""')
    else:
        # Ollama then reads the GGUF's own chat template and matches it against its known ones.
        lines.append("# chat template: not a recognised family; Ollama reads the GGUF's tokenizer.chat_template")
        stops = []
    for stop in dict.fromkeys([*stops, *eos]):
        lines.append(f"PARAMETER stop {json.dumps(stop)}")
    return "\n".join(lines) + "\n"
