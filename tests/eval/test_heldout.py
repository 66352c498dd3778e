"""Held-out items (prompt up to the last assistant turn, reference = that turn) and few-shot prompts."""

from __future__ import annotations

import json

import pytest

from tunery.data.formats import load_examples
from tunery.errors import TuneryError
from tunery.eval.fewshot import pick_shots, with_shots
from tunery.eval.heldout import default_max_new_tokens, load_heldout


def test_multi_turn_prompt_ends_before_the_last_assistant_turn(tmp_path, write_jsonl):
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3+3?"},
        {"role": "assistant", "content": "6"},
        {"role": "user", "content": "thanks"},  # after the reference: not part of the prompt
    ]
    (item,) = load_heldout(write_jsonl(tmp_path / "h.jsonl", [{"messages": conversation}]))
    assert item.reference == "6"
    assert item.prompt == conversation[:4]
    assert item.where == f"{tmp_path / 'h.jsonl'}:1"
    # For the loss, only the reference is trained: the earlier answer "4" is context.
    weights = [m.get("weight") for m in item.conversation().messages if m["role"] == "assistant"]
    assert weights == [0, 1]


def test_preference_example_uses_the_preferred_answer(tmp_path, write_jsonl):
    row = {
        "input": {"messages": [{"role": "user", "content": "Capital of France?"}]},
        "preferred_output": [{"role": "assistant", "content": "Paris"}],
        "non_preferred_output": [{"role": "assistant", "content": "Lyon"}],
    }
    (item,) = load_heldout(write_jsonl(tmp_path / "p.jsonl", [row]))
    assert (item.prompt, item.reference) == ([{"role": "user", "content": "Capital of France?"}], "Paris")


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([{"role": "user", "content": "hi"}], r"h\.jsonl:2: no assistant turn"),
        (
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}],
            r"h\.jsonl:2: the last assistant turn has no text",
        ),
    ],
)
def test_items_without_a_reference_are_refused_with_their_line(tmp_path, write_jsonl, messages, message):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    path = write_jsonl(tmp_path / "h.jsonl", [good, {"messages": messages}])
    with pytest.raises(TuneryError, match=message):
        load_heldout(path)


def test_empty_or_broken_files_are_clear_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(TuneryError, match="holds no examples"):
        load_heldout(tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"messages": [\n')
    with pytest.raises(TuneryError, match=r"bad\.jsonl:1: not valid JSON"):
        load_heldout(tmp_path / "bad.jsonl")
    with pytest.raises(TuneryError, match="cannot read"):
        load_heldout(tmp_path / "missing.jsonl")


def test_generation_budget_from_reference_lengths():
    """Longest 30 tokens → ⌈1.5·30⌉ + 8 = 53; labels of 2-3 tokens → ⌈4.5⌉ + 8 = 13, raised to the floor 16."""
    assert default_max_new_tokens([10, 30, 5]) == 53
    assert default_max_new_tokens([2, 3]) == 16
    assert default_max_new_tokens([5000]) == 1024


def test_shots_are_deterministic_by_seed_and_never_held_out(ticket_files, tmp_path):
    heldout = load_heldout(ticket_files["heldout"])
    train = load_examples(ticket_files["train"])
    first = pick_shots(train, heldout, 5, seed=0, source="train.jsonl")
    assert first == pick_shots(train, heldout, 5, seed=0, source="train.jsonl")
    assert first != pick_shots(train, heldout, 5, seed=1, source="train.jsonl")
    assert all(shot[-1]["role"] == "assistant" and all(m["role"] != "system" for m in shot) for shot in first)


def test_a_training_file_that_overlaps_the_held_out_set_never_leaks_a_question(ticket_files, tmp_path):
    """The training file holds every held-out example verbatim, and every held-out question again
    with another answer, another system prompt and stray spaces: all of those are leaks. One
    genuine training example is left, and every seed must pick exactly it."""
    heldout = load_heldout(ticket_files["heldout"])
    disguised = [
        {
            "messages": [
                {"role": "system", "content": "Another system prompt."},
                {"role": "user", "content": f"  {item.prompt[-1]['content']} "},
                {"role": "assistant", "content": "refund"},
            ]
        }
        for item in heldout
    ]
    genuine = json.loads(ticket_files["train"].read_text().splitlines()[0])
    leaky = tmp_path / "leaky.jsonl"
    leaky.write_text(
        ticket_files["heldout"].read_text() + "".join(json.dumps(row) + "\n" for row in [*disguised, genuine])
    )
    expected = [[m for m in genuine["messages"] if m["role"] != "system"]]
    for seed in range(5):
        assert pick_shots(load_examples(leaky), heldout, 1, seed=seed, source=str(leaky)) == expected
    with pytest.raises(TuneryError, match="1 examples that are not in the held-out set; 2 shots"):
        pick_shots(load_examples(leaky), heldout, 2, seed=0, source=str(leaky))


def test_shots_go_between_the_system_prompt_and_the_question(ticket_files):
    item = load_heldout(ticket_files["heldout"])[0]
    shot = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    prompt = with_shots(item, [shot, shot]).prompt
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert prompt[0] == item.prompt[0] and prompt[-1] == item.prompt[-1]
