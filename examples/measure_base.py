"""Measure how the untuned base model does on the bundled example tasks (no training).

This is the evidence that the examples are worth fine-tuning on: the base model should fail them.

    python examples/measure_base.py support-tickets [--shots 0 5] [--seeds 0 1 2]
    python examples/measure_base.py signoff-prefs

support-tickets: exact-match accuracy of the greedy reply against the label on test.jsonl,
zero-shot (the examples' own system prompt) and k-shot (k training examples, drawn by seed,
placed as user/assistant turns after the system prompt).
signoff-prefs: share of greedy answers to the held-out prompts that already end with the sign-off.

`tunery compare` does the same and more once it exists; this script only needs the Generator.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIGN_OFF = "— tunery"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def generate_all(generator, conversations: list[list[dict]], max_new_tokens: int, batch: int) -> list[str]:
    texts = []
    for start in range(0, len(conversations), batch):
        done = generator.generate(conversations[start : start + batch], max_new_tokens=max_new_tokens)
        texts.extend(c.text for c in done)
    return texts


def few_shot(messages: list[dict], shots: list[dict]) -> list[dict]:
    """System prompt, then each shot's user/assistant pair, then the question."""
    system, question = messages[0], messages[1:-1]
    turns = [m for shot in shots for m in shot["messages"][1:]]
    return [system, *turns, *question]


def measure_tickets(generator, k_values: list[int], seeds: list[int], batch: int, show: int) -> None:
    train = read_jsonl(HERE / "support-tickets" / "train.jsonl")
    test = read_jsonl(HERE / "support-tickets" / "test.jsonl")
    references = [row["messages"][-1]["content"] for row in test]
    for k in k_values:
        for seed in seeds if k else [None]:
            shots = random.Random(seed).sample(train, k) if k else []
            prompts = [few_shot(row["messages"], shots) for row in test]
            prompt_tokens = sum(
                len(generator.tokenizer.encode(generator.tokenizer.apply_template(p, add_generation_prompt=True))[0])
                for p in prompts
            ) / len(prompts)
            began = time.perf_counter()
            outputs = generate_all(generator, prompts, max_new_tokens=8, batch=batch)
            hits = sum(out.strip() == ref for out, ref in zip(outputs, references, strict=True))
            # Lenient: the reply starts with the right label, whatever follows ("billing.refund: can't").
            starts = sum(out.strip().lower().startswith(ref) for out, ref in zip(outputs, references, strict=True))
            shot_labels = ",".join(s["messages"][-1]["content"] for s in shots)
            print(
                f"{k}-shot seed={seed}: exact match {hits}/{len(test)} = {hits / len(test):.1%},"
                f" starts with the label {starts}/{len(test)}"
                f"  (prompt {prompt_tokens:.0f} tokens, {time.perf_counter() - began:.0f}s)"
                + (f"  shots: {shot_labels}" if shots else "")
            )
            predicted: dict[str, int] = {}
            for out in outputs:
                predicted[out.strip()] = predicted.get(out.strip(), 0) + 1
            print("   most frequent outputs:", sorted(predicted.items(), key=lambda kv: -kv[1])[:6])
            for out, ref in list(zip(outputs, references, strict=True))[:show]:
                print(f"   want {ref!r:20} got {out!r}")


def measure_prefs(generator, batch: int, show: int) -> None:
    rows = read_jsonl(HERE / "signoff-prefs" / "test.jsonl")
    prompts = [row["input"]["messages"] for row in rows]
    outputs = generate_all(generator, prompts, max_new_tokens=48, batch=batch)
    hits = sum(out.rstrip().endswith(SIGN_OFF) for out in outputs)
    print(f"base greedy answers ending with {SIGN_OFF!r}: {hits}/{len(rows)} = {hits / len(rows):.1%}")
    for prompt, out in list(zip(prompts, outputs, strict=True))[:show]:
        print(f"   {prompt[-1]['content']!r} -> {out!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["support-tickets", "signoff-prefs"])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--shots", type=int, nargs="+", default=[0, 5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--show", type=int, default=0, help="print this many outputs per setting")
    args = parser.parse_args()

    from tunery.inference import Generator
    from tunery.models import resolve_model

    generator = Generator(resolve_model(args.model))
    if args.task == "support-tickets":
        measure_tickets(generator, args.shots, args.seeds, args.batch, args.show)
    else:
        measure_prefs(generator, args.batch, args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
