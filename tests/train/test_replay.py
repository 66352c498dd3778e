"""Replay: the base model's own answers to general prompts, mixed into SFT (tunery/train/replay.py)."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

import tunery
from tunery.data.formats import ChatExample
from tunery.data.prompt_sets import base_answers, cache_file, cached_answers, cached_lines, load_prompt_set
from tunery.data.render import ChatTokenizer, render_chat
from tunery.errors import TuneryError
from tunery.train.config import RunConfig, load_config
from tunery.train.plan import resolve
from tunery.train.replay import replay_examples
from tunery.train.rundir import RunDir

RUN = dict(n_epochs=1, batch_size=8, save_every=3, lora={"r": 4}, seed=3)  # the shared `tuned_run`'s settings


@pytest.fixture
def replay_home(tmp_path, monkeypatch, tiny_model_dir):
    """A TUNERY_HOME whose cache holds the tiny base's answers to the replay set: what the base model
    writes there the first time (the tiny random model never ends an answer, so they are written
    here); every third answer is cut at the generation limit, as a real base's long answers are."""
    monkeypatch.setenv("TUNERY_HOME", str(tmp_path / "home"))
    path = cache_file(tiny_model_dir, "replay")
    path.parent.mkdir(parents=True)
    rows = [
        {"answer": f" Replay answer {i}. ", "finish_reason": "length" if i % 3 == 0 else "stop"}
        for i in range(len(load_prompt_set("replay")))
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return tmp_path


def test_the_draw_is_the_fraction_of_finished_answers_fixed_by_the_seed(replay_home, tiny_model_dir):
    drawn = replay_examples(0.25, 48, seed=3, model_dir=tiny_model_dir)
    assert len(drawn) == 12
    prompts = load_prompt_set("replay")
    for example in drawn:  # a replay prompt, and the base's answer to it as the assistant turn
        assert example.messages[:-1] == prompts[example.line - 1]["messages"]
        assert example.messages[-1] == {"role": "assistant", "content": f"Replay answer {example.line - 1}."}
        assert (example.line - 1) % 3 != 0  # never an answer cut short
    assert replay_examples(0.25, 48, seed=3, model_dir=tiny_model_dir) == drawn
    assert replay_examples(0.25, 48, seed=4, model_dir=tiny_model_dir) != drawn
    # More wanted than the set holds: each finished answer (206 of 310) once before any twice.
    many = Counter(e.line for e in replay_examples(0.5, 1000, seed=3, model_dir=tiny_model_dir))
    assert sum(many.values()) == 500 and set(many.values()) == {2, 3} and len(many) == 206


def test_the_draw_needs_no_answer_beyond_its_own(replay_home, tiny_model_dir):
    """A cache holding only the drawn answers and the unfinished ones is enough: nothing is
    generated, and the same examples come out; so a run answers only what it draws."""
    drawn = replay_examples(0.25, 48, seed=3, model_dir=tiny_model_dir)
    path = cache_file(tiny_model_dir, "replay")
    kept = {e.line for e in drawn} | {
        line for line, row in cached_lines(tiny_model_dir, "replay").items() if row["finish_reason"] == "length"
    }
    rows = [
        {
            "line": line,
            "answer": f" Replay answer {line - 1}. ",
            "finish_reason": "length" if (line - 1) % 3 == 0 else "stop",
        }
        for line in sorted(kept)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    before = path.read_text()
    assert len(kept) < 310 and replay_examples(0.25, 48, seed=3, model_dir=tiny_model_dir) == drawn
    assert path.read_text() == before


def test_the_cache_grows_by_the_prompts_asked_for(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNERY_HOME", str(tmp_path / "home"))
    from tunery.inference import Generator

    generator, said = Generator(tiny_model_dir), []
    first = base_answers(generator, "replay", lines=[5, 3], log=said.append)
    assert [row["line"] for row in first] == [5, 3] and said == [
        "the base model answers 2 prompts of replay.jsonl (0 already cached for this base model)"
    ]
    assert cached_answers(tiny_model_dir, "replay") is None  # two answers never pass for the set
    again = base_answers(generator, "replay", lines=[3, 9], log=said.append)
    assert said[1] == "the base model answers 1 prompt of replay.jsonl (2 already cached for this base model)"
    assert again[0] == first[1]  # read back, not generated again
    written = [json.loads(line) for line in cache_file(tiny_model_dir, "replay").read_text().splitlines()]
    assert [row["line"] for row in written] == [3, 5, 9]
    assert not list(cache_file(tiny_model_dir, "replay").parent.glob(".*tmp*"))  # written atomically
    assert cached_answers(tiny_model_dir, "replay", lines=[9, 5]) == [again[1], first[0]]
    with pytest.raises(ValueError, match="replay.jsonl has lines 1..310, not 311"):
        base_answers(generator, "replay", lines=[311])


def test_a_replay_example_is_masked_like_any_assistant_turn(tiny_model_dir):
    tok = ChatTokenizer.from_dir(tiny_model_dir)
    prompt = load_prompt_set("replay")[1]["messages"]
    example = ChatExample(messages=[*prompt, {"role": "assistant", "content": "Replay answer 1."}])
    rendered = render_chat(example, tok, None)
    mask = list(rendered.loss_mask)
    start, end = mask.index(1), len(mask) - mask[::-1].index(1)
    assert all(mask[start:end])  # one run of trained tokens: the answer and its end of turn, nothing else
    decode = lambda ids: tok.tokenizer.decode(ids, skip_special_tokens=False)  # noqa: E731
    assert decode(rendered.input_ids[start:end]) == "Replay answer 1.<|im_end|>"
    assert decode(rendered.input_ids[:start]).endswith(prompt[-1]["content"] + "<|im_end|>\n<|im_start|>assistant\n")


def test_the_plan_says_the_fraction_and_why():
    config = RunConfig(data="train.jsonl", replay=0.2)
    facts = dict(longest=50, context_length=2048, cuda_available=False, bf16_supported=False, n_examples=100)
    plan = resolve(config, **facts)
    assert plan.config.replay == 0.2
    assert "0.2 × the examples per epoch are the base model's own greedy answers" in plan.reasons["replay"]
    auto = resolve(RunConfig(data="train.jsonl"), **facts)
    assert auto.config.replay == "none" and auto.reasons["replay"].startswith(
        "opt-in: on the bundled task replay=0.2 cut forgetting"
    )
    dpo = resolve(RunConfig(data="train.jsonl", method="dpo"), **facts)
    assert dpo.config.replay == "none" and "preference data" in dpo.reasons["replay"]
    assert "replay" not in resolve(RunConfig(data="train.jsonl", replay="none"), **facts).reasons


@pytest.mark.parametrize("value", [0, 0.6, -0.1, True, "half", float("nan")])
def test_a_bad_fraction_is_refused_with_the_range(value):
    with pytest.raises(TuneryError, match="replay must be 'auto', 'none' or a fraction from 0.01 to 0.5"):
        load_config(overrides={"data": "train.jsonl", "replay": value})


def test_the_cli_lists_replay_and_names_the_range_of_a_bad_one(cli, tmp_path):
    keys = cli("train", "--keys", env={"COLUMNS": "250"})
    assert "replay" in keys.stdout and "the base model's own answers to general prompts" in keys.stdout
    bad = cli("train", "--data", tmp_path / "x.jsonl", "replay=0.7")
    assert bad.returncode == 2 and "replay must be 'auto', 'none' or a fraction from 0.01 to 0.5, got 0.7" in bad.stderr


def test_replay_is_refused_for_dpo_and_rft():
    with pytest.raises(TuneryError, match="replay mixes chat examples into SFT; method=dpo"):
        load_config(overrides={"data": "train.jsonl", "method": "dpo", "replay": 0.2})


def test_replay_none_trains_exactly_as_before(tuned_run, tiny_model_dir, chat_data, tmp_path):
    run = tunery.train(
        model=str(tiny_model_dir), data=chat_data[0], validation=chat_data[1], output=tmp_path / "none",
        replay="none", final_eval=False, **RUN,
    )  # fmt: skip
    losses = lambda path: [r["train_loss"] for r in RunDir(path).read_metrics() if r["type"] == "train"]  # noqa: E731
    assert losses(run.path) == losses(tuned_run.path)  # the default (auto: none), bitwise


def test_a_replay_run_trains_the_mixed_stream_and_resumes_it_exactly(replay_home, tiny_model_dir, chat_data, capsys):
    out = replay_home / "replay"
    run = tunery.train(model=str(tiny_model_dir), data=chat_data[0], output=out, replay=0.25, final_eval=False, **RUN)
    assert "48 yours + 12 replay" in capsys.readouterr().err  # the plan's examples
    assert load_config(out / "config.yaml").replay == 0.25
    assert json.loads((out / "final" / "tunery.json").read_text())["replay_examples"] == 12
    records = [r for r in RunDir(out).read_metrics() if r["type"] == "train"]
    assert len(records) == 8  # 60 examples in steps of 8, not 48's 6
    # A crash after step 6's checkpoint: the resumed run rebuilds the same stream and ends bitwise equal.
    final = (out / "final" / "adapter_model.safetensors").read_bytes()
    shutil.rmtree(out / "final")
    shutil.rmtree(out / "checkpoints" / "step-000008")
    assert (out / "checkpoints" / "step-000006").is_dir()
    resumed = tunery.train(resume=out)
    assert resumed.path == run.path == out
    assert (out / "final" / "adapter_model.safetensors").read_bytes() == final
    again = [r["train_loss"] for r in RunDir(out).read_metrics() if r["type"] == "train"]
    assert again == [r["train_loss"] for r in records]


def test_the_base_model_answers_the_replay_set_at_the_start_and_a_cut_answer_is_never_trained(
    tiny_model_dir, chat_data, tmp_path, cli, monkeypatch
):
    result = cli(
        "train", "--data", chat_data[0], "--model", tiny_model_dir, "--output", tmp_path / "run", "replay=0.1", "max_steps=1",
        env={"TUNERY_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    # It starts with the few prompts it would draw (5 examples, if one in two answers ends) ...
    assert "replay: the base model answers 10 prompts of replay.jsonl (0 already cached" in result.stderr
    assert "replay: 10/10 answered" in result.stderr
    # ... but the tiny random model never stops by itself: every answer is cut at the limit, so none
    # is used, and it goes on answering until the whole set is, then says so.
    assert "finished none of its 310 answers" in result.stderr and "set replay=none" in result.stderr
    monkeypatch.setenv("TUNERY_HOME", str(tmp_path / "home"))
    assert len(cached_lines(tiny_model_dir, "replay")) == 310


def test_a_full_fine_tune_mixes_replay_too(replay_home, tiny_model_dir, chat_data, capsys):
    run = tunery.train(
        model=str(tiny_model_dir), data=chat_data[0], output=replay_home / "full", adapter="full",
        replay=0.25, max_steps=2, final_eval=False, seed=3,
    )  # fmt: skip
    assert "48 yours + 12 replay" in capsys.readouterr().err
    assert json.loads((run.path / "final" / "tunery.json").read_text())["replay_examples"] == 12
