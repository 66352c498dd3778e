"""`--resume` continues the run it was given, on the data and base model it was trained on.

The epoch order indexes the training examples, so an edited train.jsonl would make a resumed run
train on other examples without a word; a changed base model would put the adapter on other
weights. Both are refused, naming the hash saved with the checkpoint and the one found now.
"""

from __future__ import annotations

import json
import shutil

import pytest
from builders import build_tiny_model, write_chat_dataset

from tunery.errors import TuneryError
from tunery.fsio import file_sha256
from tunery.models import weights_hash
from tunery.train.config import RunConfig
from tunery.train.prepare import prepare


@pytest.fixture
def checkpointed(tiny_model_dir, tmp_path):
    """A run directory with its config and a step-2 checkpoint's manifest, as a killed run leaves it."""
    model = tmp_path / "base"
    shutil.copytree(tiny_model_dir, model)
    data = write_chat_dataset(tmp_path / "train.jsonl", 12)
    prepared = prepare(RunConfig(model=str(model), data=data, output=tmp_path / "run", device="cpu"))
    prepared.make_plan(longest=64)
    step = prepared.run.checkpoints / "step-000002"
    step.mkdir()
    manifest = {"step": 2, "data": {"train": file_sha256(data)}, "base_model_sha256": weights_hash(model)}
    (step / "tunery.json").write_text(json.dumps(manifest))
    return prepared.run.path, data, model, manifest


def test_resume_on_unchanged_data_and_model_goes_on(checkpointed):
    run, *_ = checkpointed
    assert prepare(RunConfig(data="unused.jsonl"), resume_dir=run).resume


def test_resume_refuses_edited_training_data(checkpointed):
    run, data, _, manifest = checkpointed
    with data.open("a") as fh:  # one more example: every later index points elsewhere
        fh.write(data.read_text().splitlines()[0] + "\n")
    with pytest.raises(TuneryError) as refused:
        prepare(RunConfig(data="unused.jsonl"), resume_dir=run)
    message = str(refused.value)
    assert str(data) in message and "changed since step 2" in message
    assert manifest["data"]["train"][:12] in message and file_sha256(data)[:12] in message


def test_resume_refuses_a_changed_base_model(checkpointed, tmp_path):
    run, _, model, manifest = checkpointed
    build_tiny_model(tmp_path / "other", seed=1)
    shutil.copy(tmp_path / "other" / "model.safetensors", model / "model.safetensors")
    with pytest.raises(TuneryError) as refused:
        prepare(RunConfig(data="unused.jsonl"), resume_dir=run)
    message = str(refused.value)
    assert "base model" in message and "changed since step 2" in message
    assert manifest["base_model_sha256"][:12] in message and weights_hash(model)[:12] in message
