"""Constrained decoding: cost per token against unconstrained decoding, and a peer in the same run.

SmolLM2-135M-Instruct answers extraction prompts greedily ("give the name and age as JSON") three
ways, through the same `model.generate` call:

- unconstrained;
- tunery's constraint (llguidance; `tunery.constraints.grammar_processor`, the processor `tunery
  eval --response-format` uses, over the `Constraint` the server runs on every token: a mask
  before sampling, one `advance` after);
- lm-format-enforcer, the peer, when it is importable (`pip install lm-format-enforcer`, or
  `--peer-path DIR` holding it), through its transformers `prefix_allowed_tokens_fn`.

Reported: milliseconds per generated token, the overhead per token against unconstrained, the setup
time (token index, schema compile), and how many answers parse and validate against the schema.

`--mask-only` loads no model: it replays the tokens of fixed valid answers through each library and
times what constrained decoding adds to every step (the allowed-token mask, applying it to a logits
row, advancing the grammar), which is the whole overhead, since the forward pass is unchanged.

    .venv/bin/python bench/constrained_decoding.py --repeats 3
    .venv/bin/python bench/constrained_decoding.py --mask-only --peer-path /tmp/lmfe
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
SENTENCES = [
    "Alice is 31 years old.",
    "My neighbour Bob turned 47 last week.",
    "Carla, aged 22, studies chemistry.",
    "The new manager is Deepak; he is 38.",
    "Eve celebrated her 60th birthday yesterday.",
    "Frank is a 19-year-old student.",
]
MAX_NEW_TOKENS = 48


def prompts(tok):
    from tunery.data.render import render_prompt

    return [
        render_prompt(
            [{"role": "user", "content": f"Give the person's name and age as JSON with keys name and age: {s}"}], tok
        )
        for s in SENTENCES
    ]


def valid(text: str) -> bool:
    import jsonschema

    try:
        jsonschema.validate(json.loads(text), SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


def run(model, tok, prompt_ids, *, processor=None, prefix_fn=None):
    """(text, new tokens, seconds) of one greedy generation."""
    import torch
    from transformers import LogitsProcessorList

    input_ids = torch.tensor([prompt_ids])
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            eos_token_id=sorted(tok.stop_ids),
            pad_token_id=tok.pad_id,
            logits_processor=LogitsProcessorList([processor]) if processor else None,
            prefix_allowed_tokens_fn=prefix_fn,
        )
    seconds = time.perf_counter() - started
    new = out[0, len(prompt_ids) :].tolist()
    new = [t for t in new if t not in tok.stop_ids]
    return tok.decode(new), len(new), seconds


ANSWERS = [json.dumps({"name": name, "age": age}) for name, age in [("Alice", 31), ("Bob", 47), ("Carla", 22)]]


def mask_only(peer: bool) -> int:
    """Per-token cost of the constraint alone, replaying fixed answers (no model is loaded)."""
    import torch

    from tunery.constraints import Constraint, json_grammar, ll_tokenizer
    from tunery.data.render import ChatTokenizer
    from tunery.models import DEFAULT_MODEL, resolve_model

    # One thread: a mask on one 49k row is too small to share, and on a busy machine every parallel
    # torch op waits for a second thread to be scheduled (tens of ms measured at load average 15).
    torch.set_num_threads(1)
    model_dir = resolve_model(DEFAULT_MODEL)
    tok = ChatTokenizer.from_dir(model_dir)
    width = len(tok)
    logits = torch.zeros(width)
    rows = {}
    started = time.perf_counter()
    ll_tokenizer(tok)
    grammar = json_grammar(SCHEMA)
    warm = Constraint(grammar, tok)  # the first mask builds llguidance's token tables: setup, not per token
    warm.allowed(width)
    setup = time.perf_counter() - started
    steps, seconds = 0, 0.0
    for _ in range(20):
        for answer in ANSWERS:
            ids = tok.encode(answer)[0]
            started = time.perf_counter()
            constraint = Constraint(grammar, tok)
            for token in ids:
                allowed = constraint.allowed(width)
                assert allowed[token], "a valid answer's token was masked out"
                logits.masked_fill(~allowed, float("-inf"))
                constraint.advance(token)
            seconds += time.perf_counter() - started
            steps += len(ids)
    rows["llguidance"] = (seconds / steps * 1000, setup)
    if peer:
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer
        from lmformatenforcer.integrations.transformers import build_token_enforcer_tokenizer_data
        from transformers import AutoTokenizer

        started = time.perf_counter()
        data = build_token_enforcer_tokenizer_data(AutoTokenizer.from_pretrained(model_dir))
        setup = time.perf_counter() - started
        steps, seconds = 0, 0.0
        for _ in range(20):
            for answer in ANSWERS:
                ids = tok.encode(answer)[0]
                started = time.perf_counter()
                enforcer = TokenEnforcer(data, JsonSchemaParser(SCHEMA))
                for i, token in enumerate(ids):
                    allowed_ids = enforcer.get_allowed_tokens(ids[:i])
                    assert token in allowed_ids, "a valid answer's token was masked out"
                    mask = torch.ones(width, dtype=torch.bool)
                    mask[allowed_ids] = False
                    logits.masked_fill(mask, float("-inf"))
                seconds += time.perf_counter() - started
                steps += len(ids)
        rows["lm-format-enforcer"] = (seconds / steps * 1000, setup)
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print("| library | constraint ms/token | setup (s) |")
    print("|---|---:|---:|")
    for name, (per_token, setup) in rows.items():
        print(f"| {name} | {per_token:.2f} | {setup:.2f} |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="passes over the prompts (the first warms up)")
    parser.add_argument("--peer-path", help="a directory holding lm-format-enforcer (pip install --target DIR)")
    parser.add_argument("--mask-only", action="store_true", help="time the constraint alone; no model is loaded")
    args = parser.parse_args()
    if args.peer_path:
        sys.path.insert(0, args.peer_path)
    if args.mask_only:
        try:
            import lmformatenforcer.integrations.transformers  # noqa: F401
        except ImportError as exc:  # 0.11.3 imports transformers.tokenization_utils, gone in transformers 5
            print(f"lm-format-enforcer is not usable here ({exc}): the peer is left out", flush=True)
            return mask_only(peer=False)
        return mask_only(peer=True)

    import torch
    from transformers.utils import logging

    from tunery.constraints import grammar_processor, json_grammar, ll_tokenizer
    from tunery.data.render import ChatTokenizer
    from tunery.models import DEFAULT_MODEL, load_model, resolve_model

    logging.disable_progress_bar()
    model_dir = resolve_model(DEFAULT_MODEL)
    tok = ChatTokenizer.from_dir(model_dir)
    model = load_model(model_dir, device="cpu").eval()
    all_prompts = prompts(tok)
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}", flush=True)

    setup = {}
    started = time.perf_counter()
    ll_tokenizer(tok)
    grammar = json_grammar(SCHEMA)
    setup["llguidance"] = time.perf_counter() - started

    systems = {
        "unconstrained": lambda p: {},
        "llguidance": lambda p: {"processor": grammar_processor(grammar, tok, 1, len(p))},
    }
    try:
        from lmformatenforcer import JsonSchemaParser
        from lmformatenforcer.integrations.transformers import (
            build_token_enforcer_tokenizer_data,
            build_transformers_prefix_allowed_tokens_fn,
        )
        from transformers import AutoTokenizer

        started = time.perf_counter()
        hf_tok = AutoTokenizer.from_pretrained(model_dir)
        data = build_token_enforcer_tokenizer_data(hf_tok)
        setup["lm-format-enforcer"] = time.perf_counter() - started
        systems["lm-format-enforcer"] = lambda p: {
            "prefix_fn": build_transformers_prefix_allowed_tokens_fn(data, JsonSchemaParser(SCHEMA))
        }
    except ImportError as exc:
        print(f"lm-format-enforcer is not usable here ({exc}): the peer is left out", flush=True)

    results = {name: {"tokens": 0, "seconds": 0.0, "valid": 0, "answers": 0} for name in systems}
    for repeat in range(args.repeats):
        for prompt in all_prompts:
            for name, options in systems.items():  # interleaved, so load changes hit every system alike
                text, tokens, seconds = run(model, tok, prompt, **options(prompt))
                if repeat == 0:
                    continue  # warm-up pass
                r = results[name]
                r["tokens"] += tokens
                r["seconds"] += seconds
                r["valid"] += valid(text)
                r["answers"] += 1
        print(f"pass {repeat + 1}/{args.repeats} done", flush=True)

    base = results["unconstrained"]["seconds"] / max(results["unconstrained"]["tokens"], 1) * 1000
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    print("| decoding | ms/token | overhead ms/token | ratio | valid answers | setup (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        per_token = r["seconds"] / max(r["tokens"], 1) * 1000
        print(
            f"| {name} | {per_token:.1f} | {per_token - base:+.1f} | {per_token / base:.2f} | "
            f"{r['valid']}/{r['answers']} | {setup.get(name, 0):.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
