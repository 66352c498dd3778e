"""DPO's reference log-probs, from whichever model gives them, are each answer's own log-probs.

The reference is the base with the adapter off (LoRA), a frozen copy (full fine-tuning), or a
model the user names (`dpo.reference=PATH`). Each must be built like the policy: no KV cache, and
on CPU per-example attention, so packed rows and rows after a shared prompt prefix score every
sequence as if it stood alone.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunery.data.formats import PreferenceExample
from tunery.data.pack import SHARED_PREFIX
from tunery.data.render import ChatTokenizer
from tunery.train.config import RunConfig
from tunery.train.dpo import Reference, pair_batches, reference_model, render_pairs
from tunery.train.modeling import build_model
from tunery.train.plan import resolve

SYSTEM = {"role": "system", "content": "You label support tickets. Answer briefly, with one word, please."}
QUESTIONS = ["my invoice is wrong", "where is my package", "I forgot my password", "what a nice day", "hello"]


def _pairs(tok):
    examples = [
        PreferenceExample(
            prompt=[SYSTEM, {"role": "user", "content": q}],
            chosen={"role": "assistant", "content": f"billing {i} -- tunery"},
            rejected={"role": "assistant", "content": "other"},
        )
        for i, q in enumerate(QUESTIONS)
    ]
    return render_pairs(examples, tok, None)


def _plan(model_dir, **overrides):
    config = RunConfig(
        model=str(model_dir), data="unused.jsonl", method="dpo", micro_batch_tokens=4096, seed=0, **overrides
    )
    config = config.model_copy(update={"dpo": config.dpo.model_copy(update={"cache_reference": False})})
    return resolve(config, n_examples=5, longest=128, context_length=512, cuda_available=False, bf16_supported=False)


@torch.no_grad()
def _alone(model_dir, sequences) -> torch.Tensor:
    """Each sequence's summed answer log-prob from the model's own forward, one sequence at a time."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = []
    for s in sequences:
        ids = torch.tensor([s.input_ids])
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        out.append(logp[torch.tensor(s.loss_mask[1:]).bool()].sum())
    return torch.stack(out)


@pytest.mark.parametrize("layout", ["packed", "shared-prefix"])
@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_reference_logps_are_each_answer_scored_alone(layout, adapter, tiny_model_dir):
    tok = ChatTokenizer.from_dir(tiny_model_dir)
    pairs = _pairs(tok)
    group = list(range(len(pairs)))
    sequences = [c for c, _ in pairs] + [r for _, r in pairs]
    expected = _alone(tiny_model_dir, sequences)

    share = layout == "shared-prefix"
    references = {}
    for name in ("auto", "explicit"):
        reference = "auto" if name == "auto" else str(tiny_model_dir)
        plan = _plan(tiny_model_dir, adapter=adapter, share_prefix=share, dpo={"reference": reference})
        batches = pair_batches(group, pairs, plan, tok.pad_id)
        assert any((b["segments"] == SHARED_PREFIX).any() for b in batches) == share
        assert max(len(b["segments"][0].unique()) for b in batches) > 2  # several sequences in one row
        torch.manual_seed(0)
        policy = build_model(plan, tiny_model_dir)
        with torch.no_grad():  # the policy differs from its base: the reference must not be the policy
            for n, p in policy.named_parameters():
                if "lora_B" in n or (adapter == "full" and "layers.0.mlp" in n):
                    p.add_(torch.randn_like(p) * 0.05)
        frozen = reference_model(plan, tiny_model_dir)
        assert (frozen is None) == (adapter == "lora" and name == "auto")
        ref = Reference(plan, policy, frozen, pairs, tok.pad_id, model_dir=tiny_model_dir, cache=False)
        sums, counts = ref.compute(group, pairs)
        references[name] = sums
        assert counts.tolist() == [sum(s.loss_mask[1:]) for s in sequences]
    if adapter == "lora":  # the explicit reference (the base itself) equals the base with the adapter off
        torch.testing.assert_close(references["explicit"], references["auto"], atol=1e-4, rtol=0)
    for name, sums in references.items():
        torch.testing.assert_close(sums.double(), expected.double(), atol=1e-4, rtol=0, msg=f"{name} reference")


def test_the_reference_cache_follows_the_chat_template_and_the_reference_weights(tiny_model_dir, tmp_path, monkeypatch):
    """Cached log-probs are reused only for the same reference weights and the same tokens."""
    import json
    import shutil

    from builders import build_tiny_model

    monkeypatch.setenv("TUNERY_HOME", str(tmp_path / "home"))
    cache = tmp_path / "home" / "cache" / "dpo-reference"
    base, explicit = tmp_path / "base", tmp_path / "reference"
    shutil.copytree(tiny_model_dir, base)
    shutil.copytree(tiny_model_dir, explicit)

    def cached(reference: str) -> set[str]:
        plan = _plan(base, dpo={"reference": reference})
        tok = ChatTokenizer.from_dir(base)
        frozen = reference_model(plan, base)
        Reference(plan, None, frozen, _pairs(tok), tok.pad_id, model_dir=base, cache=True)
        return {p.name for p in cache.glob("*.pt")}

    first = cached(str(explicit))
    assert len(first) == 1 and cached(str(explicit)) == first  # the same inputs: reused

    build_tiny_model(tmp_path / "other", seed=1)  # the reference's own weights change in place
    shutil.copy(tmp_path / "other" / "model.safetensors", explicit / "model.safetensors")
    second = cached(str(explicit))
    assert len(second) == 2

    config = json.loads((base / "tokenizer_config.json").read_text())  # another chat template
    config["chat_template"] = config["chat_template"].replace("message['content']", "message['content'] + '!'")
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    assert len(cached(str(explicit))) == 3
