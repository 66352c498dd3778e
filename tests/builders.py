"""Builders for the tests: a tiny offline model and tokenizer, small datasets, the real CLI.

A plain module (not conftest.py) so that test files can import it by a name that no other
directory shadows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? Paris is the capital of France.",
    "Classify the ticket: my invoice is wrong. Label: billing",
    "system user assistant tool hello world thanks please answer briefly",
    '{"name": "Ada", "age": 36, "city": "London"} json extract the fields',
    "0 1 2 3 4 5 6 7 8 9 + - * / = ? ! . , : ; ( ) [ ] { } \" '",
]


CHATML_SPECIAL = {
    "bos_token": "<|im_start|>",
    "eos_token": "<|im_end|>",
    "pad_token": "<|im_end|>",
    "unk_token": "<|endoftext|>",
}


def build_tiny_tokenizer(
    out: Path, template: str = CHATML, special: dict[str, str] | None = None, stop: Sequence[str] = ()
) -> None:
    """A byte-level BPE tokenizer trained on CORPUS, written into `out` with its config.

    Args:
        template: the chat template.
        special: tokenizer_config's special-token keys → their text; by default ChatML's, with
            SPECIAL's ids 0-2 (the tiny model's config relies on them).
        stop: extra stop tokens besides the EOS, written to generation_config.json (as Gemma does).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokens = list(dict.fromkeys([*(SPECIAL if special is None else special.values()), *stop]))
    special = CHATML_SPECIAL if special is None else special
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    tok.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **special, "chat_template": template}
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    if stop:
        ids = [tok.token_to_id(t) for t in [special["eos_token"], *stop]]
        (out / "generation_config.json").write_text(json.dumps({"eos_token_id": ids}))


def build_tiny_model(out: Path, seed: int = 0, arch: str = "llama", **config_overrides) -> Path:
    """A tiny random causal LM (2 layers, 64 dims) with the ChatML tokenizer, written into `out`.

    Args:
        arch: "llama" (separate q/k/v and gate/up projections), "phi3" (fused qkv_proj and
            gate_up_proj), "qwen2" (biased q/k/v) or "mistral" (sliding-window attention).
        config_overrides: extra config fields, e.g. `sliding_window=8`.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    build_tiny_tokenizer(out)
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(out / "tokenizer.json")).get_vocab_size()
    config = AutoConfig.for_model(
        arch,
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=True,
        **config_overrides,
    )
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(out, safe_serialization=True)
    return out


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM (a server drains and exits), then after a minute SIGKILL to its whole process group."""
    import signal

    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """Run the real `tunery` CLI in a subprocess and return the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "tunery", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


TOPICS = {
    "billing": ["invoice", "refund", "charge", "payment"],
    "shipping": ["package", "delivery", "courier", "parcel"],
    "account": ["password", "login", "email", "profile"],
    "other": ["weather", "music", "movie", "recipe"],
}


def write_chat_dataset(path: Path, n: int, seed: int = 0) -> Path:
    """A small, deterministic labelling dataset in OpenAI chat format."""
    import random

    rng = random.Random(seed)
    with path.open("w") as fh:
        for i in range(n):
            label = rng.choice(sorted(TOPICS))
            word = rng.choice(TOPICS[label])
            example = {
                "messages": [
                    {"role": "system", "content": "Label the ticket."},
                    {"role": "user", "content": f"My {word} has a problem, please help (#{seed}-{i})"},
                    {"role": "assistant", "content": label},
                ]
            }
            fh.write(json.dumps(example) + "\n")
    return path


def write_preference_dataset(path: Path, n: int, seed: int = 0) -> Path:
    """Pairs whose preferred answer always ends with the sign-off '-- tunery'."""
    import random

    rng = random.Random(seed)
    with path.open("w") as fh:
        for i in range(n):
            word = rng.choice([w for words in TOPICS.values() for w in words])
            answer = f"Your {word} request {i} is noted"
            pair = {
                "input": {"messages": [{"role": "user", "content": f"Help with my {word} please (#{seed}-{i})"}]},
                "preferred_output": [{"role": "assistant", "content": f"{answer}. -- tunery"}],
                "non_preferred_output": [{"role": "assistant", "content": f"{answer}."}],
            }
            fh.write(json.dumps(pair) + "\n")
    return path


def run_losses(run_dir: Path) -> list[tuple[str, int, float]]:
    """(type, step, loss) of every metrics record, in order: training, validation and the final pass."""
    from tunery.train.rundir import RunDir

    keys = {"train": "train_loss", "valid": "valid_loss", "full_valid": "full_valid_loss"}
    return [(r["type"], r["step"], r[keys[r["type"]]]) for r in RunDir(run_dir).read_metrics()]


def wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Wait until a training run started as `proc` has logged `step`; fail if `proc` exits first."""
    import time

    from tunery.train.rundir import RunDir

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r.get("step", 0) >= step for r in RunDir(run_dir).read_metrics()):
            return
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        time.sleep(0.02)
    raise AssertionError(f"training never reached step {step}")


def write_heldout(path: Path, references: list[str]) -> None:
    """Monitor held-out items whose references are regex patterns (graders/regex.py): `/^/` accepts
    any answer and `/^never$/` none, so the score follows the data, whatever the tiny model says.

    Replaced atomically: a background monitor run may be reading the file at that moment.
    """
    rows = [
        {"messages": [{"role": "user", "content": f"My invoice {i} is wrong"}, {"role": "assistant", "content": ref}]}
        for i, ref in enumerate(references)
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    os.replace(tmp, path)
