"""The whole fine-tuning workflow through the real openai client, with one worker slot.

A long job holds the slot and is paused, which lets the queued short job run: upload → job →
events → checkpoints → models → chat (plain and streamed) on the fine-tuned model and a
checkpoint. Then the long job resumes from its checkpoint and is cancelled. Also DPO, and the
isolation of models between organisations.
"""

from __future__ import annotations

import csv
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import yaml
from serving import wait_for_event, wait_for_status

LONG = {"hyperparameters": {"n_epochs": 1000, "batch_size": 4}, "tunery": {"save_every": 100000}}


@pytest.fixture(scope="module")
def server(make_server):
    # Two adapters loaded at most: the tests below use four models, so the LRU cache evicts.
    return make_server(workers=1, args=["--adapter-cache", "2"])


@pytest.fixture(scope="module")
def alpha(server):
    return server.client("sk-alpha")


@pytest.fixture(scope="module")
def files(alpha, chat_data):
    train, valid = chat_data
    return (
        alpha.files.create(file=train.open("rb"), purpose="fine-tune"),
        alpha.files.create(file=valid.open("rb"), purpose="fine-tune"),
    )


@pytest.fixture(scope="module")
def long_job(alpha, files):
    """A long job that takes the only slot; it is paused below, then resumed and cancelled."""
    job = alpha.fine_tuning.jobs.create(
        model="tiny", training_file=files[0].id, method={"type": "supervised", "supervised": LONG}
    )
    wait_for_event(alpha, job.id, "Step 2/")
    return job


@pytest.fixture(scope="module")
def finished_job(alpha, files, long_job):
    """A short job queued behind `long_job` (one slot): it starts only once that one is paused."""
    train, valid = files
    job = alpha.fine_tuning.jobs.create(
        model="tiny",
        training_file=train.id,
        validation_file=valid.id,
        suffix="wf",
        seed=3,
        method={
            "type": "supervised",
            "supervised": {
                # A high rate, so that six steps visibly change the tiny model's answers.
                "hyperparameters": {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 30},
                # Early stopping off: its saves of each new best would join the checkpoints listed below.
                "tunery": {"max_steps": 6, "save_every": 2, "eval_every": 3, "lora": {"r": 4}, "early_stopping": "off"},
            },
        },
    )
    time.sleep(1)  # a few worker ticks: a free slot would have started it by now
    assert alpha.fine_tuning.jobs.retrieve(job.id).status == "queued"
    assert alpha.fine_tuning.jobs.pause(long_job.id).status == "pausing"
    assert wait_for_status(alpha, long_job.id, {"paused", "failed"}, timeout=60).status == "paused"
    return wait_for_status(alpha, job.id, {"succeeded", "failed", "cancelled"})


def test_the_job_succeeds_with_openai_fields(server, alpha, finished_job):
    job = finished_job
    assert job.status == "succeeded", job.error
    # The job's seed and validation file are what the trainer ran with.
    resolved = yaml.safe_load((server.home / "jobs" / job.id / "run" / "config.yaml").read_text())
    assert resolved["seed"] == 3 and resolved["validation"].endswith(f"/files/{job.validation_file}")
    assert job.fine_tuned_model == f"ft:tiny:org-alpha:wf:{job.id.removeprefix('ftjob-')}"
    assert job.finished_at >= job.created_at and job.error is None
    # trained_tokens as OpenAI bills them: every token of the steps' examples, prompts included;
    # the loss-token count is the run's loss_tokens.
    records = [json.loads(line) for line in (server.home / "jobs" / job.id / "run" / "metrics.jsonl").open()]
    steps = [r for r in records if r["type"] == "train"]
    assert job.trained_tokens == sum(r["tokens"] for r in steps) > sum(r["loss_tokens"] for r in steps) > 0
    manifest = json.loads((server.home / "jobs" / job.id / "run" / "final" / "tunery.json").read_text())
    assert manifest["metrics"]["trained_tokens"] == job.trained_tokens
    assert manifest["metrics"]["loss_tokens"] == sum(r["loss_tokens"] for r in steps)
    assert job.hyperparameters.n_epochs == 1 and job.hyperparameters.batch_size == 4 and job.seed == 3
    assert job.hyperparameters.learning_rate_multiplier == 30
    [result] = job.result_files
    assert alpha.files.retrieve(result).purpose == "fine-tune-results"
    rows = list(csv.DictReader(io.StringIO(alpha.files.content(result).text)))
    assert list(rows[0]) == ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]


def test_a_queued_job_starts_when_the_slot_frees(alpha, long_job, finished_job):
    paused = wait_for_event(alpha, long_job.id, "paused at step")
    started = wait_for_event(alpha, finished_job.id, "Fine-tuning job started")
    assert started.created_at >= paused.created_at


def test_events_carry_one_metrics_record_per_step(alpha, finished_job):
    job = finished_job
    events = list(alpha.fine_tuning.jobs.list_events(job.id, limit=100))
    assert events == sorted(events, key=lambda e: e.created_at, reverse=True)  # newest first
    metrics = [e for e in reversed(events) if e.type == "metrics"]
    assert [e.data["step"] for e in metrics] == [1, 2, 3, 4, 5, 6]
    assert set(metrics[0].data) >= {
        "step",
        "total_steps",
        "train_loss",
        "valid_loss",
        "full_valid_loss",
        "train_mean_token_accuracy",
        "valid_mean_token_accuracy",
        "full_valid_mean_token_accuracy",
    }
    with_valid = [e.data["step"] for e in metrics if e.data["valid_loss"] is not None]
    assert with_valid == [3, 6]
    assert metrics[-1].data["full_valid_loss"] is not None
    assert metrics[-1].message.startswith("Step 6/6: training loss=")
    messages = [e.message for e in events]
    for expected in (
        "Validating training file",
        "Files validated",
        "Fine-tuning job started",
        "New fine-tuned model created",
        "The job has successfully completed",
        "Evaluating: 12/12 validation answers",  # the final evaluation's progress, after the last step
    ):
        assert any(expected in m for m in messages), expected
    evaluating = [m for m in reversed(messages) if m.startswith("Evaluating:")]
    assert evaluating[-1] == "Evaluating: 12/12 validation answers"
    # Newest first: the evaluation ran after step 5's event; step 6's event waits for its full
    # validation, which the trainer reports as it exits, so it comes last.
    assert messages.index(metrics[-1].message) < messages.index(evaluating[-1]) < messages.index(metrics[-2].message)
    # Paging through events with after/limit yields the same list.
    paged = list(alpha.fine_tuning.jobs.list_events(job.id, limit=3))
    assert [e.id for e in paged] == [e.id for e in events]


def test_checkpoints_are_listed_and_servable(alpha, finished_job):
    job = finished_job
    checkpoints = list(alpha.fine_tuning.jobs.checkpoints.list(job.id))
    assert [c.step_number for c in checkpoints] == [6, 4, 2]  # kept although the trainer rotated step 2
    for c in checkpoints:
        assert c.fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-{c.step_number}"
        assert c.metrics.step == c.step_number and c.metrics.train_loss is not None
        assert c.fine_tuning_job_id == job.id and c.id.startswith("ftckpt_")
    models = {m.id for m in alpha.models.list()}
    assert {job.fine_tuned_model, *(c.fine_tuned_model_checkpoint for c in checkpoints)} <= models
    reply = alpha.chat.completions.create(
        model=checkpoints[-1].fine_tuned_model_checkpoint, messages=[{"role": "user", "content": "hello"}], max_tokens=4
    )
    assert reply.model == checkpoints[-1].fine_tuned_model_checkpoint


def test_chat_with_the_new_model_without_a_restart(alpha, finished_job):
    job = finished_job
    request = dict(
        model=job.fine_tuned_model,
        temperature=0,
        max_tokens=8,
        messages=[
            {"role": "system", "content": "Label the ticket."},
            {"role": "user", "content": "My invoice has a problem, please help"},
        ],
    )
    reply = alpha.chat.completions.create(**request)
    assert reply.model == job.fine_tuned_model and reply.usage.prompt_tokens > 0
    streamed = "".join(c.choices[0].delta.content or "" for c in alpha.chat.completions.create(**request, stream=True))
    assert streamed == reply.choices[0].message.content
    base = alpha.chat.completions.create(**{**request, "model": "tiny"})
    assert base.choices[0].message.content != reply.choices[0].message.content  # the adapter changes the output


def test_concurrent_requests_on_different_adapters_get_their_own_answers(alpha, finished_job):
    tuned = finished_job.fine_tuned_model
    models = [tuned, f"{tuned}:ckpt-step-4", "tiny", f"{tuned}:ckpt-step-2"]
    messages = [{"role": "user", "content": "My invoice is wrong"}]

    def answer(model: str) -> str:
        reply = alpha.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=6)
        return reply.choices[0].message.content

    alone = {m: answer(m) for m in models}
    assert alone[tuned] != alone["tiny"]
    # Sent together, they are micro-batched (mixing adapters, evicting from the cache of two).
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(answer, models * 3))
    assert together == [alone[m] for m in models * 3]


def test_models_are_private_to_their_organisation_and_deletable(server, alpha, finished_job):
    job = finished_job
    beta = server.client("sk-beta")
    assert job.fine_tuned_model not in {m.id for m in beta.models.list()}
    with pytest.raises(openai.NotFoundError):
        beta.models.retrieve(job.fine_tuned_model)
    with pytest.raises(openai.NotFoundError):
        beta.chat.completions.create(model=job.fine_tuned_model, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        beta.models.delete(job.fine_tuned_model)
    step2 = f"{job.fine_tuned_model}:ckpt-step-2"
    assert alpha.models.delete(step2).deleted
    with pytest.raises(openai.NotFoundError):
        alpha.chat.completions.create(model=step2, messages=[{"role": "user", "content": "hi"}])
    assert step2 not in {m.id for m in alpha.models.list()}
    assert [c.step_number for c in alpha.fine_tuning.jobs.checkpoints.list(job.id)] == [6, 4]


def test_resume_continues_from_the_checkpoint_and_cancel_stops_it(server, alpha, long_job, finished_job):
    step = int(wait_for_event(alpha, long_job.id, "paused at step").message.rsplit(" ", 1)[1])
    assert step in [c.step_number for c in alpha.fine_tuning.jobs.checkpoints.list(long_job.id)]
    assert alpha.fine_tuning.jobs.resume(long_job.id).status == "queued"
    wait_for_event(alpha, long_job.id, f"resumed from step {step}")
    wait_for_event(alpha, long_job.id, f"Step {step + 2}/")
    cancelled = alpha.fine_tuning.jobs.cancel(long_job.id)
    assert cancelled.status == "cancelled" and cancelled.error.code == "cancelled"
    wait_for_event(alpha, long_job.id, "Training stopped at step", timeout=60)
    # The trainer continued the same run: every step once, in order, across the pause.
    metrics = server.home / "jobs" / long_job.id / "run" / "metrics.jsonl"
    steps = [r["step"] for r in map(json.loads, metrics.read_text().splitlines()) if r["type"] == "train"]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > step


def test_a_dpo_job_trains_on_preference_data(alpha, tmp_path):
    pairs = tmp_path / "prefs.jsonl"
    with pairs.open("w") as fh:
        for i in range(12):
            fh.write(
                json.dumps(
                    {
                        "input": {
                            "messages": [{"role": "user", "content": f"Classify ticket {i}: my invoice is wrong"}]
                        },
                        "preferred_output": [{"role": "assistant", "content": "billing"}],
                        "non_preferred_output": [{"role": "assistant", "content": "other"}],
                    }
                )
                + "\n"
            )
    uploaded = alpha.files.create(file=pairs.open("rb"), purpose="fine-tune")
    assert uploaded.status == "processed", uploaded.status_details
    # Preference data under a supervised method fails in validating_files, with the reason.
    wrong = alpha.fine_tuning.jobs.create(model="tiny", training_file=uploaded.id)
    failed = wait_for_status(alpha, wrong.id, {"failed"}, timeout=60)
    assert failed.error.code == "invalid_training_file" and "preference" in failed.error.message
    job = alpha.fine_tuning.jobs.create(
        model="tiny",
        training_file=uploaded.id,
        method={
            "type": "dpo",
            "dpo": {"hyperparameters": {"beta": 0.2, "batch_size": 4, "n_epochs": 1}, "tunery": {"max_steps": 2}},
        },
    )
    done = wait_for_status(alpha, job.id, {"succeeded", "failed"})
    assert done.status == "succeeded", done.error
    assert done.method.type == "dpo" and done.method.dpo.hyperparameters.beta == 0.2
    # "auto" is reported as what the run used: DPO's LoRA base rate, times one.
    assert done.hyperparameters.learning_rate_multiplier == 1.0 and done.hyperparameters.batch_size == 4
    reply = alpha.chat.completions.create(
        model=done.fine_tuned_model, max_tokens=3, messages=[{"role": "user", "content": "Classify ticket 1"}]
    )
    assert reply.choices[0].message.role == "assistant"


def test_a_diverging_run_fails_with_a_nan_loss_error(alpha, files):
    job = alpha.fine_tuning.jobs.create(
        model="tiny",
        training_file=files[0].id,
        method={
            "type": "supervised",
            "supervised": {
                # The multiplier is capped at 1000x, so the tunery block sets the absurd rate directly.
                "hyperparameters": {"batch_size": 4},
                "tunery": {"learning_rate": 1e30, "max_steps": 20, "warmup_ratio": 0.0},
            },
        },
    )
    failed = wait_for_status(alpha, job.id, {"succeeded", "failed"})
    assert failed.status == "failed" and failed.error.code == "nan_loss"
    assert "not finite" in failed.error.message and failed.fine_tuned_model is None
    last = next(iter(alpha.fine_tuning.jobs.list_events(job.id)))
    assert last.level == "error" and "not finite" in last.message


def test_a_full_fine_tune_from_the_tunery_block_is_served_as_its_own_model(server, alpha, files):
    job = alpha.fine_tuning.jobs.create(
        model="tiny",
        training_file=files[0].id,
        suffix="full",
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"batch_size": 4}, "tunery": {"adapter": "full", "max_steps": 2}},
        },
    )
    done = wait_for_status(alpha, job.id, {"succeeded", "failed", "cancelled"})
    assert done.status == "succeeded", done.error
    final = server.home / "jobs" / job.id / "run" / "final"
    assert (final / "config.json").is_file() and not (final / "adapter_config.json").exists()  # weights, no adapter
    request = dict(messages=[{"role": "user", "content": "My invoice is wrong"}], temperature=0, max_tokens=6)
    tuned = alpha.chat.completions.create(model=done.fine_tuned_model, **request)
    step = alpha.chat.completions.create(model=f"{done.fine_tuned_model}:ckpt-step-2", **request)
    assert tuned.choices[0].message.content == step.choices[0].message.content  # the final step is the model
    # Deleting the model removes its weights; its checkpoint, a separate copy, stays servable.
    assert alpha.models.delete(done.fine_tuned_model).deleted and not final.exists()
    with pytest.raises(openai.NotFoundError):
        alpha.chat.completions.create(model=done.fine_tuned_model, **request)
    assert alpha.chat.completions.create(model=f"{done.fine_tuned_model}:ckpt-step-2", **request).choices
    # As at OpenAI: the job keeps its record of the model, and the checkpoint stays listed.
    assert alpha.fine_tuning.jobs.retrieve(job.id).fine_tuned_model == done.fine_tuned_model
    assert 2 in [c.step_number for c in alpha.fine_tuning.jobs.checkpoints.list(job.id)]
    assert done.fine_tuned_model not in {m.id for m in alpha.models.list()}


def test_select_best_publishes_the_chosen_checkpoint_and_says_so_in_the_events(server, alpha, files):
    """select=best through the API, on a full fine-tune (each checkpoint scored as a model of its own)."""
    job = alpha.fine_tuning.jobs.create(
        model="tiny",
        training_file=files[0].id,
        validation_file=files[1].id,
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {"batch_size": 4},
                "tunery": {"adapter": "full", "max_steps": 2, "save_every": 1, "select": "best"},
            },
        },
    )
    done = wait_for_status(alpha, job.id, {"succeeded", "failed", "cancelled"})
    assert done.status == "succeeded", done.error
    chosen = json.loads((server.home / "jobs" / job.id / "run" / "final" / "tunery.json").read_text())["selection"]
    assert [s["step"] for s in chosen["scores"]] == [1, 2]
    messages = [e.message for e in alpha.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert any(m.startswith(f"Selected the checkpoint at step {chosen['step']} of 2") for m in messages), messages
    request = dict(messages=[{"role": "user", "content": "My invoice is wrong"}], temperature=0, max_tokens=6)
    tuned = alpha.chat.completions.create(model=done.fine_tuned_model, **request)
    step = alpha.chat.completions.create(model=f"{done.fine_tuned_model}:ckpt-step-{chosen['step']}", **request)
    assert tuned.choices[0].message.content == step.choices[0].message.content


def test_early_stopping_ends_the_job_at_its_best_step_and_says_so_in_the_events(server, alpha, tmp_path):
    """A constant, too-high rate on 16 examples: the validation loss is lowest at an early pass."""
    from builders import write_chat_dataset

    train, valid = (
        write_chat_dataset(tmp_path / "t.jsonl", 16, seed=1),
        write_chat_dataset(tmp_path / "v.jsonl", 12, seed=2),
    )
    job = alpha.fine_tuning.jobs.create(
        model="tiny",
        training_file=alpha.files.create(file=train.open("rb"), purpose="fine-tune").id,
        validation_file=alpha.files.create(file=valid.open("rb"), purpose="fine-tune").id,
        seed=3,
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {"n_epochs": 8, "batch_size": 4},
                "tunery": {
                    "max_steps": 12,
                    "eval_every": 2,
                    "learning_rate": 0.05,
                    "lr_scheduler": "constant",
                    "lora": {"r": 4},
                    "early_stopping": 2,
                },
            },
        },
    )
    done = wait_for_status(alpha, job.id, {"succeeded", "failed", "cancelled"})
    assert done.status == "succeeded", done.error
    manifest = json.loads((server.home / "jobs" / job.id / "run" / "final" / "tunery.json").read_text())
    stop = manifest["early_stopping"]
    assert stop["stopped_at_step"] < 12 and manifest["step"] == stop["best_step"] < stop["stopped_at_step"]
    messages = [e.message for e in alpha.fine_tuning.jobs.list_events(job.id, limit=100)]
    expected = (
        f"Early stopping at step {stop['stopped_at_step']} of 12: validation loss did not improve for 2 passes; "
        f"final model is step {stop['best_step']}"
    )
    assert any(m.startswith(expected) for m in messages), messages
