"""Writes the arithmetic RFT task: prompts.jsonl (train), heldout.jsonl and grader.json.

Each line asks for a small sum or difference and carries its `answer`; the python grader gives 1
when the reply's last `Answer: N` line holds that number, else 0. There are no reference answers
to imitate: the grader alone defines success. Run `python generate.py` to rewrite the files.
"""

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
SYSTEM = "Solve the arithmetic problem. End your reply with a final line of the form 'Answer: N'."
GRADER = {
    "type": "python",
    "name": "final_answer",
    "source": (
        "import re\n\n"
        "def grade(sample, item):\n"
        '    found = re.findall(r"Answer:\\s*(-?\\d+)", sample["output_text"])\n'
        '    return 1.0 if found and int(found[-1]) == int(item["answer"]) else 0.0\n'
    ),
}


def problem(rng: random.Random) -> dict:
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    if rng.random() < 0.5:
        question, answer = f"What is {a} + {b}?", a + b
    else:
        a, b = max(a, b), min(a, b)
        question, answer = f"What is {a} - {b}?", a - b
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    return {"messages": messages, "answer": answer}


def main() -> None:
    rng = random.Random(15)
    rows, seen = [], set()
    while len(rows) < 88:
        row = problem(rng)
        key = row["messages"][1]["content"]
        if key not in seen:
            seen.add(key)
            rows.append(row)
    for name, part in (("prompts.jsonl", rows[:48]), ("heldout.jsonl", rows[48:])):
        (HERE / name).write_text("".join(json.dumps(r) + "\n" for r in part))
    (HERE / "grader.json").write_text(json.dumps(GRADER, indent=2) + "\n")


if __name__ == "__main__":
    main()
