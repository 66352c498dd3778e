"""Generator batching: grouping by length and sharing the prompt prefix change no answer."""

from __future__ import annotations

import pytest

from tunery.inference import MIN_SHARED_PREFIX, Generator, prefix_batch, shared_prefix_length

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer briefly, please, and thanks."}
QUESTIONS = ["hello", "What is the capital of France?", "Classify the ticket: my invoice is wrong.", "2 + 2 = ?"]


def test_shared_prefix_length_and_layout():
    shared = list(range(100, 100 + MIN_SHARED_PREFIX))
    rows = [shared + [1, 2, 3], shared + [1, 9]]
    assert shared_prefix_length(rows) == MIN_SHARED_PREFIX + 1  # the common 1 as well
    assert shared_prefix_length(rows, keep=2) == MIN_SHARED_PREFIX  # 2 tokens of the shorter row stay out
    assert shared_prefix_length([shared[:-1] + [7], shared[:-1] + [8]]) == 0  # too short to be worth it
    assert shared_prefix_length([shared + [1]]) == 0  # one row: nothing to share
    ids, mask = prefix_batch([[5, 6, 7, 8], [5, 6, 9]], prefix=2, pad_id=0, device="cpu")
    assert ids.tolist() == [[5, 6, 7, 8], [5, 6, 0, 9]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 1]]


@pytest.mark.parametrize("questions", [QUESTIONS, QUESTIONS[:1] * 3])
def test_batched_generation_equals_one_at_a_time(tiny_model_dir, questions):
    """Rows of different lengths share the system prompt; batched answers (prefix cached once,
    padding in the middle) must equal the answers each prompt gets alone."""
    generator = Generator(tiny_model_dir)
    conversations = [[SYSTEM, {"role": "user", "content": q}] for q in questions]
    prompts = [
        generator.tokenizer.encode(generator.tokenizer.apply_template(c, add_generation_prompt=True))[0]
        for c in conversations
    ]
    assert shared_prefix_length(prompts) >= MIN_SHARED_PREFIX
    alone = [generator.generate([c], max_new_tokens=12)[0] for c in conversations]
    together = generator.generate(conversations, max_new_tokens=12, batch_size=8)
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    assert [c.prompt_tokens for c in together] == [len(p) for p in prompts]


def test_tools_reach_the_prompt_as_in_training(tiny_model_dir, tmp_path):
    """A held-out example's tool definitions are part of its prompt, as render_chat puts them
    there in training; conversations without tools in the same batch are unchanged."""
    import json
    import shutil

    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "with-tools")
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = (
        "{% if tools %}{{ '<|im_start|>system\\nTools: ' + (tools | tojson) + '<|im_end|>\\n' }}{% endif %}"
        + config["chat_template"]
    )
    config_path.write_text(json.dumps(config))
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    generator = Generator(model_dir)
    conversation = [SYSTEM, {"role": "user", "content": "hello"}]
    expected = generator.tokenizer.encode(
        generator.tokenizer.apply_template(conversation, tools=tools, add_generation_prompt=True)
    )[0]
    (with_tools,) = generator.generate([conversation], tools=[tools], max_new_tokens=4)
    (without,) = generator.generate([conversation], max_new_tokens=4)
    assert with_tools.prompt_tokens == len(expected) > without.prompt_tokens
    mixed = generator.generate([conversation, conversation], tools=[tools, None], max_new_tokens=4)
    assert [c.token_ids for c in mixed] == [with_tools.token_ids, without.token_ids]
    with pytest.raises(ValueError, match="2 tool lists for 1 conversations"):
        generator.generate([conversation], tools=[tools, None])


def test_groups_share_each_prompt_pass_and_answer_as_alone(tiny_model_dir):
    """n answers per prompt in one batch (the prompts' shared system prompt run once, the rest of
    each prompt once, its cache repeated n times, rows of different lengths padded after the shared
    prefix): greedy rows equal each prompt's answer alone."""
    from tunery.inference import generate_tokens

    generator = Generator(tiny_model_dir)
    tok = generator.tokenizer
    prompts = [
        tok.encode(tok.apply_template([SYSTEM, {"role": "user", "content": q}], add_generation_prompt=True))[0]
        for q in QUESTIONS[:3]
    ]
    assert len({len(p) for p in prompts}) > 1  # padding is exercised
    assert shared_prefix_length(prompts) >= MIN_SHARED_PREFIX  # and the shared prefix
    alone = [generate_tokens(generator.model, tok, [p], max_new_tokens=10)[0] for p in prompts]
    grouped = generate_tokens(generator.model, tok, prompts, n=2, max_new_tokens=10)
    assert grouped == [row for row in alone for _ in range(2)]
