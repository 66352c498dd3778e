"""Writes the ticket-labelling RFT task from ../support-tickets: prompts.jsonl, heldout.jsonl, grader.json.

Each line is a support-ticket conversation ending on the customer's message, with the right
`label` as a field for the grader; the answer is never in the conversation, so there is nothing
to imitate. The grader gives 1 for the exact label and 0.2 for a reply that names it among other
text: partial credit the base model earns from the first step (docs/rft.md).

- prompts.jsonl: 48 messages of support-tickets/train.jsonl, 6 per label, drawn with a fixed seed;
- heldout.jsonl: all of support-tickets/valid.jsonl and test.jsonl (100), written from templates
  that train never uses (examples/support-tickets/README.md), so a held-out gain is not recall.

Run `python generate.py` to rewrite the files; it reproduces them byte for byte.
"""

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
SOURCE = HERE.parent / "support-tickets"
PER_LABEL = 6
GRADER = {
    "type": "multi",
    "name": "label",
    "graders": {
        "exact": {
            "type": "string_check",
            "name": "exact",
            "input": "{{sample.output_text}}",
            "reference": "{{item.label}}",
            "operation": "eq",
        },
        "named": {
            "type": "string_check",
            "name": "named",
            "input": "{{sample.output_text}}",
            "reference": "{{item.label}}",
            "operation": "ilike",
        },
    },
    "calculate_output": "0.8 * exact + 0.2 * named",
}


def prompt(line: str) -> dict:
    row = json.loads(line)
    *conversation, answer = row["messages"]
    return {"messages": conversation, "label": answer["content"]}


def read(name: str) -> list[dict]:
    return [prompt(line) for line in (SOURCE / name).read_text().splitlines()]


def main() -> None:
    pool = read("train.jsonl")
    rng = random.Random(15)
    train = []
    for label in sorted({r["label"] for r in pool}):
        train += rng.sample([r for r in pool if r["label"] == label], PER_LABEL)
    rng.shuffle(train)
    (HERE / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    held_out = read("valid.jsonl") + read("test.jsonl")
    (HERE / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held_out))
    (HERE / "grader.json").write_text(json.dumps(GRADER, indent=2) + "\n")


if __name__ == "__main__":
    main()
