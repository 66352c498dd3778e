"""The issue's acceptance run on the real default model, SmolLM2-135M-Instruct, kept to a few steps."""

from __future__ import annotations

import json

import pytest
from serving import REPO, wait_for_status

pytestmark = pytest.mark.real_model

TICKETS = REPO / "examples" / "support-tickets"


@pytest.fixture(scope="module")
def server(make_server, smollm2_dir):
    return make_server(workers=1)


def test_fine_tune_and_chat_with_smollm2_through_the_openai_client(server):
    client = server.client()
    assert "smollm2-135m-instruct" in [m.id for m in client.models.list()]
    training = client.files.create(file=(TICKETS / "train.jsonl").open("rb"), purpose="fine-tune")
    assert training.status == "processed", training.status_details
    job = client.fine_tuning.jobs.create(
        model="smollm2-135m-instruct",
        training_file=training.id,
        suffix="tickets",
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {"n_epochs": 1, "batch_size": 1},
                "tunery": {"max_steps": 2, "save_every": 100},
            },
        },
    )
    done = wait_for_status(client, job.id, {"succeeded", "failed"}, timeout=300)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model.startswith("ft:smollm2-135m-instruct:org-alpha:tickets:")
    losses = [e.data["train_loss"] for e in client.fine_tuning.jobs.list_events(job.id) if e.type == "metrics"]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    [checkpoint] = client.fine_tuning.jobs.checkpoints.list(job.id)
    assert checkpoint.fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-2"
    assert done.fine_tuned_model in [m.id for m in client.models.list()]

    ticket = json.loads((TICKETS / "valid.jsonl").read_text().splitlines()[0])["messages"][:2]
    reply = client.chat.completions.create(model=done.fine_tuned_model, messages=ticket, max_tokens=12, temperature=0)
    text = reply.choices[0].message.content
    assert text.strip() and reply.usage.prompt_tokens > 100  # the system prompt lists the labels
    stream = client.chat.completions.create(
        model=done.fine_tuned_model, messages=ticket, max_tokens=12, temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream) == text
