"""A tiny Llama written as a GGUF file with the `gguf` package, the way llama.cpp writes one.

Weights are random float32 arrays (kept, so a test can compare the converted model with them);
the tokenizer is the builders' tiny byte-level BPE, stored as llama.cpp's "gpt2" metadata. Q and K
are permuted as llama.cpp's converter does, so a correct reader has to undo it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, CONTEXT = 16, 2, 4, 2, 32, 256
CONTROL = 3  # llama.cpp's token type for special tokens


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's rotary layout: within each head, the two halves' rows interleaved."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_tiny_gguf(
    path: Path, tokenizer_dir: Path, *, chat_template: str | None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write the GGUF and return its weights under their Hugging Face names (before permuting).

    `tokenizer_dir` holds the builders' tiny `tokenizer.json` and `tokenizer_config.json`.
    """
    import gguf

    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    vocab = spec["model"]["vocab"] | {t["content"]: t["id"] for t in spec["added_tokens"]}
    tokens = sorted(vocab, key=vocab.get)
    special = {t["content"] for t in spec["added_tokens"] if t["special"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]

    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32) * 0.02

    head_dim = HIDDEN // HEADS
    hf = {"model.embed_tokens.weight": w(len(tokens), HIDDEN), "model.norm.weight": np.ones(HIDDEN, np.float32)}
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    for i in range(LAYERS):
        layer = {
            "input_layernorm": ("attn_norm", np.ones(HIDDEN, np.float32)),
            "self_attn.q_proj": ("attn_q", w(HEADS * head_dim, HIDDEN)),
            "self_attn.k_proj": ("attn_k", w(KV_HEADS * head_dim, HIDDEN)),
            "self_attn.v_proj": ("attn_v", w(KV_HEADS * head_dim, HIDDEN)),
            "self_attn.o_proj": ("attn_output", w(HIDDEN, HEADS * head_dim)),
            "post_attention_layernorm": ("ffn_norm", np.ones(HIDDEN, np.float32)),
            "mlp.gate_proj": ("ffn_gate", w(FFN, HIDDEN)),
            "mlp.up_proj": ("ffn_up", w(FFN, HIDDEN)),
            "mlp.down_proj": ("ffn_down", w(HIDDEN, FFN)),
        }
        for hf_name, (gguf_name, value) in layer.items():
            hf[f"model.layers.{i}.{hf_name}.weight"] = value
            names[f"model.layers.{i}.{hf_name}.weight"] = f"blk.{i}.{gguf_name}.weight"

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([CONTROL if t in special else 1 for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(vocab[config["bos_token"]])
    writer.add_eos_token_id(vocab[config["eos_token"]])
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for hf_name, value in hf.items():
        if hf_name.endswith("q_proj.weight"):
            value = _permute(value, HEADS)
        elif hf_name.endswith("k_proj.weight"):
            value = _permute(value, KV_HEADS)
        writer.add_tensor(names[hf_name], value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return hf
