"""Fixtures for the evaluation tests: a tiny labelling task and a real LoRA adapter trained on it.

The adapter is trained here, in a few seconds, with peft and a plain loop on the tiny model, and
saved the way a tunery run saves it (RUN_DIR/final/ with adapter files and tunery.json), so that
`tunery eval` and `tunery compare` see exactly what the trainer will hand them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SYSTEM = "Classify the ticket. Answer billing or account."
# Words the tiny tokenizer knows (see tests/conftest.py CORPUS), so prompts stay short.
BILLING = ["my invoice is wrong", "the invoice is wrong please", "wrong invoice thanks", "invoice please answer"]
ACCOUNT = ["hello world please", "hello please answer briefly", "world hello thanks", "thanks hello world"]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The tiny model is 64 wide: on one thread it runs several times faster than on two, whose
    hand-offs cost more than they save (and far more on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ticket(text: str, label: str) -> dict:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Classify the ticket: {text}"},
            {"role": "assistant", "content": label},
        ]
    }


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def write_jsonl():
    """`write_jsonl(path, rows) -> path`: one JSON object per line."""
    return _write_jsonl


@pytest.fixture(scope="session")
def ticket_files(tmp_path_factory) -> dict[str, Path]:
    """train.jsonl (16 examples) and heldout.jsonl (8 examples, none of them in train)."""
    root = tmp_path_factory.mktemp("tickets")
    train = [
        ticket(f"{text} {n}", label)
        for n in range(2)
        for texts, label in ((BILLING, "billing"), (ACCOUNT, "account"))
        for text in texts
    ]
    heldout = [
        ticket(f"{text} {n}", label)
        for n in (7, 8)
        for texts, label in ((BILLING, "billing"), (ACCOUNT, "account"))
        for text in texts[:2]
    ]
    return {
        "train": _write_jsonl(root / "train.jsonl", train),
        "heldout": _write_jsonl(root / "heldout.jsonl", heldout),
    }


def train_lora(model_dir: Path, train_file: Path, out: Path, steps: int) -> Path:
    """Fit a LoRA adapter on `train_file` with a plain masked-cross-entropy loop; save it as RUN_DIR/final."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunery.data.formats import load_examples
    from tunery.data.render import ChatTokenizer, render_chat

    torch.manual_seed(0)
    tok = ChatTokenizer.from_dir(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    # The tiny model's tied embeddings are initialised so small (std 0.02) that no logit can grow
    # confident through LoRA alone; a trainable copy of lm_head, saved with the adapter, lets it.
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"],
        modules_to_save=["lm_head"],
    )
    model = get_peft_model(model, config)
    rendered = [render_chat(example, tok) for example in load_examples(train_file)]
    width = max(len(r.input_ids) for r in rendered)
    ids = torch.tensor([r.input_ids + [tok.pad_id] * (width - len(r.input_ids)) for r in rendered])
    mask = torch.tensor([r.loss_mask + [0] * (width - len(r.loss_mask)) for r in rendered], dtype=torch.float32)
    attention = torch.tensor([[1] * len(r.input_ids) + [0] * (width - len(r.input_ids)) for r in rendered])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        loss = (nll * mask[:, 1:]).sum() / mask[:, 1:].sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    final = out / "final"
    model.save_pretrained(final)
    (final / "tunery.json").write_text(
        json.dumps(
            {
                "base_model": str(model_dir),
                "base_model_path": str(model_dir),
                "method": "sft",
                "adapter": "lora",
                "steps": steps,
            }
        )
    )
    return out


@pytest.fixture(scope="session")
def tuned_run(tiny_model_dir, ticket_files, tmp_path_factory) -> Path:
    """A run directory whose final/ holds a LoRA adapter that learned the ticket labels."""
    return train_lora(tiny_model_dir, ticket_files["train"], tmp_path_factory.mktemp("run"), steps=100)


@pytest.fixture(scope="session")
def untrained_run(tiny_model_dir, ticket_files, tmp_path_factory) -> Path:
    """A run directory with a freshly initialised adapter: LoRA's B = 0, so it equals the base."""
    return train_lora(tiny_model_dir, ticket_files["train"], tmp_path_factory.mktemp("untrained"), steps=0)
