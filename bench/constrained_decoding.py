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

    .venv/bin/python bench/constrained_decoding.py --repeats 3
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="passes over the prompts (the first warms up)")
    parser.add_argument("--peer-path", help="a directory holding lm-format-enforcer (pip install --target DIR)")
    args = parser.parse_args()
    if args.peer_path:
        sys.path.insert(0, args.peer_path)

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
    except ImportError:
        print("lm-format-enforcer is not importable: the peer is left out", flush=True)

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
