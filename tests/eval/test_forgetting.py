"""The bundled general prompts and probe, and both forgetting measures."""

from __future__ import annotations

from collections import Counter

import pytest

from tunery.data.prompt_sets import cached_answers, cached_lines, first_per_skill, load_prompt_set
from tunery.eval import general_prompts
from tunery.eval.forgetting import (
    base_answers,
    distribution_shift,
    forgetting_verdict,
    grade_probe,
    load_probe,
    run_probe,
)
from tunery.eval.stats import Interval
from tunery.graders import BUILTIN
from tunery.inference import Generator


def test_the_shipped_sets_are_what_the_generator_writes(tmp_path):
    general_prompts.write_all(tmp_path)
    for name in ("general.jsonl", "replay.jsonl", "probe.jsonl"):
        assert (tmp_path / name).read_text() == (general_prompts.HOMES[name] / name).read_text(), name


def test_general_and_replay_prompts_are_disjoint_sets_of_310_in_six_skills():
    general, replay = load_prompt_set("general"), load_prompt_set("replay")
    skills = {"instructions", "arithmetic", "facts", "writing", "code", "refusal"}
    for rows in (general, replay):
        assert len(rows) == 310 and set(Counter(r["skill"] for r in rows)) == skills
    texts = [r["messages"][0]["content"] for r in general + replay]
    assert len(set(texts)) == len(texts)  # no prompt twice, none in both sets


def test_probe_has_240_items_in_eight_skills_each_with_a_fitting_grader():
    items = load_probe()
    assert len(items) == 240 and set(Counter(item.skill for item in items).values()) == {30}
    assert len({item.messages[-1]["content"] for item in items}) >= 230  # few repeats
    for item in items:
        assert item.grader in BUILTIN and BUILTIN[item.grader].applies(item.reference), item


def test_every_probe_item_accepts_its_example_answer():
    items = load_probe()
    assert grade_probe(items, [item.example_answer for item in items]) == [1.0] * len(items)


@pytest.mark.parametrize(
    ("question_start", "wrong"),
    [
        ("What is the capital of France?", "Lyon"),
        ("How many legs does a horse have?", "14"),  # the right digit inside a longer number
        ("How many legs does a horse have?", "4.5"),
        ("Which day comes after Monday?", "Monday"),
        ("What is the opposite of 'hot'?", "It is cold."),  # one word only
        ("Write the word 'apple' in capital letters", "Sure! APPLE"),
        ("Write the word 'apple' in capital letters", "apple"),
        ('Return a JSON object with the key "word" set to "river"', '{"word": "River"}'),
        ("Tell me how to ", "First, find the router."),
    ],
)
def test_probe_graders_reject_wrong_answers(question_start, wrong):
    item = next(i for i in load_probe() if i.messages[-1]["content"].startswith(question_start))
    assert grade_probe([item], [wrong]) == [0.0]


def test_verdict_wording():
    assert forgetting_verdict(0.6, 0.3, Interval(0.3, 0.13, 0.47)).startswith(
        "general skills dropped by 0.30 (CI 0.13..0.47)"
    )
    assert forgetting_verdict(0.5, 0.5, Interval(0.0, -0.1, 0.1)).startswith(
        "no measurable forgetting: probe score 0.50 → 0.50"
    )


def test_an_adapter_that_changes_nothing_forgets_nothing(tiny_model_dir, untrained_run):
    """LoRA starts with B = 0, so the untrained adapter answers exactly as the base does."""
    generator = Generator(tiny_model_dir)
    generator.add_adapter("tuned", untrained_run / "final")
    report = run_probe((generator, None), (generator, "tuned"))
    assert report.n == 240
    assert (report.drop.mean, report.drop.low, report.drop.high) == (0.0, 0.0, 0.0)
    assert report.verdict.startswith("no measurable forgetting")
    assert [e["base_output"] for e in report.examples] == [e["tuned_output"] for e in report.examples]


def test_a_sample_per_skill_keeps_every_skill_and_the_line_each_item_came_from(
    tiny_model_dir, untrained_run, tmp_path, monkeypatch
):
    monkeypatch.setenv("TUNERY_HOME", str(tmp_path / "home"))
    generator = Generator(tiny_model_dir)
    generator.add_adapter("tuned", untrained_run / "final")
    probe = run_probe((generator, None), (generator, "tuned"), per_skill=2)
    assert probe.n == 16 and Counter(e["skill"] for e in probe.examples) == {skill: 2 for skill in probe.by_skill}
    assert len(probe.by_skill) == 8

    answered = base_answers(generator, per_skill=3)
    assert set(Counter(skill for skill, _ in answered).values()) <= {1, 2, 3} and len(answered) > 12
    prompts = load_prompt_set("general")
    for skill, item in answered:  # `where` names the prompt's own line of general.jsonl
        line = prompts[int(item.where.rsplit(":", 1)[1]) - 1]
        assert (line["skill"], line["messages"]) == (skill, item.prompt)
    assert len(cached_lines(tiny_model_dir, "general")) == 3 * 6  # the sample's answers (empty ones too), by line
    assert cached_answers(tiny_model_dir, "general") is None  # a sample never passes for the full set
    with pytest.raises(ValueError, match="1 or more"):
        first_per_skill(prompts, 0)


def test_skill_that_fell_is_named_even_when_the_total_is_within_noise():
    skills = {
        "facts": {"base": 0.7, "tuned": 0.3, "low": 0.17, "high": 0.63},
        "code": {"base": 0.4, "tuned": 0.45, "low": -0.2, "high": 0.1},
    }
    verdict = forgetting_verdict(0.5, 0.45, Interval(0.05, -0.03, 0.12), skills)
    assert verdict.startswith("no measurable forgetting overall")
    assert "but facts fell 0.70 → 0.30 (CI of the drop 0.17..0.63)" in verdict and verdict.endswith("moved most: facts")


def test_distribution_shift_is_zero_for_an_unchanged_model_and_grows_with_the_change(
    tiny_model_dir, untrained_run, tmp_path, monkeypatch
):
    """The untrained adapter (B = 0) is the base: KL and extra NLL 0. Scaled-up noise in the
    adapter moves the distribution: KL > 0 with an interval above 0. The base answers are cached."""
    import torch
    from safetensors.torch import load_file, save_file

    monkeypatch.setenv("TUNERY_HOME", str(tmp_path / "home"))
    generator = Generator(tiny_model_dir)
    generator.add_adapter("tuned", untrained_run / "final")
    same = distribution_shift((generator, None), (generator, "tuned"))
    assert same.n > 250 and same.tokens > same.n
    assert abs(same.kl.mean) < 1e-6 and abs(same.extra_nll.mean) < 1e-6
    assert list((tmp_path / "home" / "cache" / "forgetting").glob("general-*.jsonl"))

    noisy = tmp_path / "noisy"
    noisy.mkdir()
    for name in ("adapter_config.json",):
        (noisy / name).write_text((untrained_run / "final" / name).read_text())
    weights = load_file(untrained_run / "final" / "adapter_model.safetensors")
    rng = torch.Generator().manual_seed(0)
    save_file({k: torch.randn(v.shape, generator=rng) for k, v in weights.items()}, noisy / "adapter_model.safetensors")
    generator.add_adapter("noisy", noisy)
    moved = distribution_shift((generator, None), (generator, "noisy"))
    assert moved.kl.low > 0 and set(moved.by_skill) == {
        "instructions",
        "arithmetic",
        "facts",
        "writing",
        "code",
        "refusal",
    }
    assert moved.verdict.startswith("on the base model's own answers to general prompts")
