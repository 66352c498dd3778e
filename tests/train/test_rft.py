"""Reinforcement fine-tuning (GRPO): the loss math by hand, the data rules through the CLI, and
runs through the real CLI on the tiny model (artefacts, reward columns, SIGKILL + resume bitwise)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys

import pytest
import torch
from builders import wait_for_step
from safetensors.torch import load_file

from tunery.train.config import load_config
from tunery.train.losses import group_advantages, grpo_token_losses
from tunery.train.rundir import RunDir

# -- the loss, by hand ----------------------------------------------------------------------------


def test_group_advantages_are_reward_minus_group_mean():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    assert group_advantages(rewards).tolist() == [[0.75, -0.25, -0.25, -0.25], [0.0, 0.0, 0.0, 0.0]]
    # original GRPO: divided by the group's (sample) std, here sqrt(0.25) = 0.5 for the first group
    scaled = group_advantages(rewards, scale=True)
    assert scaled[0].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5], abs=1e-3)
    assert scaled[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # zero variance teaches nothing either way


def test_grpo_token_loss_has_the_policy_gradient_and_k3_kl():
    logps = torch.tensor([-1.0, -2.0, -0.5], requires_grad=True)
    advantages = torch.tensor([0.75, 0.75, -0.25])
    losses, kl = grpo_token_losses(logps, advantages)
    assert losses.tolist() == [-0.75, -0.75, 0.25] and kl.tolist() == [0.0, 0.0, 0.0]
    (losses.sum() / 3).backward()
    assert logps.grad.tolist() == pytest.approx([-0.25, -0.25, 1 / 12])  # -A / n_tokens

    logps = torch.tensor([-1.0], requires_grad=True)
    ref = torch.tensor([-2.0])
    losses, kl = grpo_token_losses(logps, torch.tensor([0.0]), ref, kl_coef=0.5)
    # k3: exp(ref - logp) - (ref - logp) - 1 = e^-1 + 1 - 1
    assert kl.item() == pytest.approx(torch.exp(torch.tensor(-1.0)).item())
    losses.sum().backward()
    # d/dlogp of 0.5·(exp(ref-logp) - (ref-logp) - 1) = 0.5·(1 - exp(ref-logp))
    assert logps.grad.item() == pytest.approx(0.5 * (1 - torch.exp(torch.tensor(-1.0)).item()))


# -- data and runs through the CLI ----------------------------------------------------------------

WORDS = ["hello world", "thanks please", "answer briefly", "world hello", "please answer"]
GRADER = {
    "type": "text_similarity",
    "name": "close",
    "input": "{{sample.output_text}}",
    "reference": "{{item.target}}",
    "evaluation_metric": "fuzzy_match",
}
TINY = ["rft.group_size=4", "rft.max_new_tokens=8", "batch_size=2", "n_epochs=1", "lora.r=4", "seed=5",
        "save_every=2", "eval_every=3", "learning_rate=0.01"]  # fmt: skip


def prompt(i: int, **extra) -> dict:
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": f"{WORDS[i % 5]} {i}"}]
    return {"messages": messages, "target": WORDS[(i + 1) % 5], **extra}


@pytest.fixture(scope="module")
def rft_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("rft-data")
    (root / "prompts.jsonl").write_text("".join(json.dumps(prompt(i)) + "\n" for i in range(16)))
    (root / "heldout.jsonl").write_text("".join(json.dumps(prompt(i)) + "\n" for i in range(100, 104)))
    (root / "grader.json").write_text(json.dumps(GRADER))
    return root


def rft_args(model, files, out, *extra):
    return ["train", "--method", "rft", "--model", model, "--data", files / "prompts.jsonl",
            "--validation", files / "heldout.jsonl", "--grader", files / "grader.json", "--output", out,
            *TINY, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def finished_rft(tiny_model_dir, rft_files, tmp_path_factory):
    from builders import run_cli

    out = tmp_path_factory.mktemp("rft-runs") / "ref"
    result = run_cli(*rft_args(tiny_model_dir, rft_files, out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_rft_run_logs_rewards_and_publishes_an_adapter(finished_rft):
    out, result = finished_rft
    run = RunDir(out)
    assert run.read_status()["state"] == "succeeded"
    assert (out / "final" / "adapter_model.safetensors").is_file()
    manifest = json.loads((out / "final" / "tunery.json").read_text())
    assert manifest["method"] == "rft" and set(manifest["data"]) == {"train", "validation", "grader"}
    config = load_config(out / "config.yaml")
    assert config.unresolved() == [] and config.rft.kl_coef == 0.0 and config.rft.temperature == 1.0
    assert "rft.kl_coef" in result.stderr and "Dr. GRPO" in result.stderr  # the recipe, with reasons

    records = run.read_metrics()
    train = [r for r in records if r["type"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 9))  # 16 prompts / 2 per step
    for r in train:
        assert 0.0 <= r["reward_mean"] <= 1.0 and 0.0 <= r["zero_variance_fraction"] <= 1.0
        assert r["completion_length"] <= 8 and r["grader_errors"] == 0 and r["rollout_tokens_per_second"] > 0
    valid = [r for r in records if r["type"] == "valid"]
    assert [r["step"] for r in valid] == [0, 3, 6, 8]  # the base first, then every eval_every
    assert all(r["valid_samples"] == 4 for r in valid)
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    assert {"reward_mean", "pass_rate", "zero_variance_fraction", "valid_pass_rate"} <= set(header)
    assert "step 0 (base model): held-out pass rate" in result.stdout + result.stderr


def test_rft_sigkill_then_resume_is_bitwise(finished_rft, tiny_model_dir, rft_files, tmp_path, cli):
    out = tmp_path / "killed"
    kill_after = random.Random().randint(3, 6)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunery", *map(str, rft_args(tiny_model_dir, rft_files, out))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_step(out, kill_after, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    result = cli("train", "--resume", out)
    assert result.returncode == 0, result.stderr[-3000:]
    reference = load_file(finished_rft[0] / "final" / "adapter_model.safetensors")
    resumed = load_file(out / "final" / "adapter_model.safetensors")
    for name in reference:
        assert torch.equal(reference[name], resumed[name]), f"{name} differs (killed after step {kill_after})"

    def rewards(run):
        return [
            (r["step"], r["reward_mean"], r["train_loss"]) for r in RunDir(run).read_metrics() if r["type"] == "train"
        ]

    assert rewards(out) == rewards(finished_rft[0])  # the same completions were sampled again


def test_rft_data_problems_are_named_by_line_and_code(tiny_model_dir, rft_files, tmp_path, cli):
    bad = tmp_path / "bad.jsonl"
    rows = [prompt(0), prompt(1), {k: v for k, v in prompt(2).items() if k != "target"}]
    rows[1]["messages"].append({"role": "assistant", "content": "hello"})
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    result = cli("validate", bad, "--grader", rft_files / "grader.json")
    assert result.returncode == 1
    assert "line 2" in result.stdout and "rft_last_turn" in result.stdout
    assert (
        "line 3" in result.stdout and "rft_missing_item_field" in result.stdout and "{{item.target}}" in result.stdout
    )
    assert "line 4" in result.stdout and "invalid_json" in result.stdout
    result = cli("validate", rft_files / "prompts.jsonl", "--grader", rft_files / "grader.json")
    assert result.returncode == 0, result.stdout
    result = cli(*rft_args(tiny_model_dir, rft_files, tmp_path / "run")[:6], bad, "--grader", rft_files / "grader.json")
    assert result.returncode != 0 and "rft_last_turn" in result.stderr and "Traceback" not in result.stderr


def test_tunery_plot_draws_the_reward_curves(finished_rft, cli):
    result = cli("plot", finished_rft[0])
    assert result.returncode == 0, result.stderr
    png = finished_rft[0] / "rewards.png"
    assert f"wrote {png}" in result.stdout and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_step_whose_groups_all_tie_runs_no_backward_and_still_steps_adamw(tiny_model_dir, rft_files, tmp_path, cli):
    """No answer of a tiny random model is exactly "§", so every group ties at 0: the loop skips the
    forward and backward, yet AdamW steps on zero gradients, as it would after an all-zero backward
    (a gradient of None would make it skip the weights: no step count, no decay of the moments)."""
    never = {"type": "string_check", "name": "never", "input": "{{sample.output_text}}", "reference": "§",
             "operation": "eq"}  # fmt: skip
    (tmp_path / "never.json").write_text(json.dumps(never))
    out = tmp_path / "tied"
    args = rft_args(tiny_model_dir, rft_files, out, "max_steps=2", "save_every=2")
    args[args.index("--grader") + 1] = tmp_path / "never.json"
    result = cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    train = [r for r in RunDir(out).read_metrics() if r["type"] == "train"]
    assert [(r["zero_variance_fraction"], r["train_loss"], r["grad_norm"]) for r in train] == [(1.0, 0.0, 0.0)] * 2
    optimizer = torch.load(out / "checkpoints" / "step-000002" / "trainer_state.pt", weights_only=False)["optimizer"]
    moments = list(optimizer["state"].values())
    assert moments and all(float(s["step"]) == 2 and not s["exp_avg"].any() for s in moments)


def test_answers_with_zero_advantage_add_nothing_to_the_gradient(tiny_model_dir):
    """The loop runs forward and backward only over answers whose advantage is not 0 (without a KL
    term): the gradient equals the one over every answer, the loss still divided by all tokens."""
    from tunery.data.render import ChatTokenizer, render_prompt
    from tunery.train.config import RunConfig
    from tunery.train.modeling import build_model, step_batches
    from tunery.train.plan import resolve
    from tunery.train.rft import Rollout, policy_step, rollout_sequences

    config = RunConfig(model=str(tiny_model_dir), data="unused.jsonl", method="rft", rft={"grader": "unused.json"})
    plan = resolve(config, n_examples=4, longest=64, context_length=512, cuda_available=False, bf16_supported=False)
    tok = ChatTokenizer.from_dir(tiny_model_dir)
    rng = random.Random(0)
    prompts = [render_prompt(prompt(i)["messages"], tok) for i in range(2)]
    rollouts = [
        Rollout(prompts[k // 3], [rng.randrange(5, 200) for _ in range(rng.randint(2, 9))], "") for k in range(6)
    ]
    advantages = torch.tensor([2 / 3, -1 / 3, -1 / 3, 0.0, 0.0, 0.0])  # one group learns, one tied
    sequences = rollout_sequences(rollouts, None)
    n_tokens = sum(s.trained_tokens for s in sequences)

    def gradients(chosen):
        torch.manual_seed(0)
        model = build_model(plan, tiny_model_dir)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(std=0.1)  # away from the start, where lora_B = 0 hides lora_A's gradient
        batches = step_batches([sequences[i] for i in chosen], plan, tok.pad_id)
        loss = policy_step(model, batches, advantages[chosen], n_tokens, plan)["loss"]
        return loss, {n: p.grad for n, p in model.named_parameters() if p.requires_grad}

    all_loss, all_grads = gradients(list(range(6)))
    some_loss, some_grads = gradients([0, 1, 2])
    assert some_loss == pytest.approx(all_loss, abs=1e-7)
    assert any(g.abs().max() > 0 for g in all_grads.values())
    for name, g in all_grads.items():
        torch.testing.assert_close(some_grads[name], g, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("cuda", [False, True])
def test_auto_recipe_samples_fewer_shorter_answers_and_evaluates_twice_on_a_cpu(cuda):
    from tunery.train.config import RunConfig
    from tunery.train.plan import resolve

    def plan(**rft):
        config = RunConfig(
            model="m", data="d.jsonl", method="rft", validation="v.jsonl", rft={"grader": "g.json", **rft}
        )
        return resolve(
            config, n_examples=48, longest=200, context_length=2048, cuda_available=cuda, bf16_supported=False
        )

    p = plan()
    assert (p.config.batch_size, p.config.n_epochs, p.total_steps) == (4, 3, 36)
    rft = p.config.rft
    assert (rft.group_size, rft.max_new_tokens, rft.temperature, rft.kl_coef) == ((8, 128) if cuda else (4, 32)) + (
        1.0,
        0.0,
    )
    assert p.config.eval_every == (9 if cuda else 36)  # on a CPU only the base (step 0) and the end
    assert all(key in p.reasons for key in ("rft.group_size", "rft.max_new_tokens", "eval_every"))
    assert plan(compute_multiplier=2.0).config.rft.group_size == (16 if cuda else 8)  # OpenAI's knob scales G
    assert plan(group_size=3, max_new_tokens=7).config.rft.max_new_tokens == 7  # a value set is kept


def test_log_probs_are_the_sampling_temperatures(tiny_model_dir):
    """With rft.temperature T the answers come from softmax(logits / T), so the trained log-probs are
    that distribution's (as TRL and verl compute them): log_softmax(logits / T) at each answer token."""
    from tunery.data.render import ChatTokenizer, render_prompt
    from tunery.train.config import RunConfig
    from tunery.train.modeling import build_model, step_batches
    from tunery.train.plan import resolve
    from tunery.train.rft import Rollout, rollout_sequences, token_logps

    config = RunConfig(model=str(tiny_model_dir), data="unused.jsonl", method="rft", rft={"grader": "unused.json"})
    plan = resolve(config, n_examples=4, longest=64, context_length=512, cuda_available=False, bf16_supported=False)
    tok = ChatTokenizer.from_dir(tiny_model_dir)
    (sequence,) = rollout_sequences([Rollout(render_prompt(prompt(0)["messages"], tok), [17, 42, 99, 5], "")], None)
    torch.manual_seed(0)
    model = build_model(plan, tiny_model_dir)
    (batch,) = step_batches([sequence], plan, tok.pad_id)
    ids = torch.tensor([sequence.input_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float()
        for temperature in (1.0, 0.5):
            logps, _ = token_logps(model, batch, temperature)
            expected = torch.log_softmax(logits / temperature, dim=-1).gather(-1, ids[0, 1:, None]).squeeze(-1)
            torch.testing.assert_close(logps, expected[-4:], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(token_logps(model, batch, 0.5)[0], token_logps(model, batch, 1.0)[0])
