"""Writes the ticket-labelling RFT task from ../support-tickets: prompts.jsonl, heldout.jsonl, grader.json.

Each line is a support-ticket conversation ending on the customer's message, with the right
`label` as a field for the grader; its answer is never in the conversation, so there is nothing
to imitate. Every conversation starts with the same 8 solved examples, one per label (few-shot
turns), so that the base model answers with a label, if not always the right one. The grader
gives 1 for the right label alone and 0 for anything else (docs/rft.md).

- prompts.jsonl: 32 messages of support-tickets/train.jsonl, 4 per label, drawn with a fixed seed;
- heldout.jsonl: all of support-tickets/valid.jsonl and test.jsonl (100), written from templates
  that train never uses (examples/support-tickets/README.md), so a held-out gain is not recall.

Run `python generate.py` to rewrite the files; it reproduces them byte for byte.
"""

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
SOURCE = HERE.parent / "support-tickets"
PER_LABEL = 4
# The reply must be the right label and nothing else: 1 or 0. Partial credit was measured and
# dropped: 0.2 for any bare label, and the sampled answers soon agreed on one label for every
# message (held-out pass rate 0.24 -> 0.13); 0.2 for naming the label among other words (`ilike`),
# and answers grew longer without passing more often ("other" is also inside "another").
GRADER = {
    "type": "string_check",
    "name": "label",
    "input": "{{sample.output_text}}",
    "reference": "{{item.label}}",
    "operation": "eq",
}


def prompt(line: str, shots: list[dict]) -> dict:
    system, message, answer = json.loads(line)["messages"]
    return {"messages": [system, *shots, message], "label": answer["content"]}


def read(name: str, shots: list[dict]) -> list[dict]:
    return [prompt(line, shots) for line in (SOURCE / name).read_text().splitlines()]


def main() -> None:
    rows = [json.loads(line)["messages"] for line in (SOURCE / "train.jsonl").read_text().splitlines()]
    labels = sorted({answer["content"] for _, _, answer in rows})
    rng = random.Random(15)
    # One solved example per label, in a fixed order, as earlier turns of every conversation:
    # the base model then answers with a label (not always the right one) instead of a letter.
    examples = [rng.choice([r for r in rows if r[2]["content"] == label]) for label in labels]
    rng.shuffle(examples)
    shots = [turn for _, message, answer in examples for turn in (message, answer)]
    pool = [r for r in read("train.jsonl", shots) if r["messages"][-1] not in shots]
    train = []
    for label in labels:
        train += rng.sample([r for r in pool if r["label"] == label], PER_LABEL)
    rng.shuffle(train)
    (HERE / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    held_out = read("valid.jsonl", shots) + read("test.jsonl", shots)
    (HERE / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held_out))
    (HERE / "grader.json").write_text(json.dumps(GRADER, indent=2) + "\n")


if __name__ == "__main__":
    main()
