"""A save killed at the worst moment loses nothing and leaks nothing.

Each test SIGKILLs a real save at the exact moment it moves its finished directory into place
(`tunery.fsio`'s `os.replace` kills the process), then starts the trainer's preparation
on that run directory, as `tunery train --resume` does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tunery.train.config import RunConfig, dump_config
from tunery.train.prepare import prepare

# Kill the process when `publish` moves a temporary directory into place.
KILL_ON_PUBLISH = (
    "import os, signal, types; from pathlib import Path; from tunery import fsio; "
    "from tunery.train import checkpoint as c; real = os.replace; "
    "fsio.os = types.SimpleNamespace(**{**vars(os), 'replace': lambda a, b: "
    "os.kill(os.getpid(), signal.SIGKILL) if 'tmp' in Path(a).name else real(a, b)}); "
)


def _killed(code: str) -> None:
    result = subprocess.run([sys.executable, "-c", KILL_ON_PUBLISH + code], capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr[-2000:]


def _resumable_run(run: Path, model_dir: Path, data: Path) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(dump_config(RunConfig(model=str(model_dir), data=data, output=run)))


def test_a_checkpoint_killed_while_publishing_leaves_no_temporary_directory(tiny_model_dir, chat_data, tmp_path):
    run = tmp_path / "run"
    _resumable_run(run, tiny_model_dir, chat_data[0])
    _killed(
        "from transformers import AutoModelForCausalLM; "
        f"model = AutoModelForCausalLM.from_pretrained({str(tiny_model_dir)!r}); "
        f"c.save_checkpoint(Path({str(run / 'checkpoints')!r}), step=2, model=model, "
        f"model_dir=Path({str(tiny_model_dir)!r}), trainer_state={{'step': 2}}, manifest={{}}, keep=2)"
    )
    (left,) = (run / "checkpoints").glob(".tmp-step-000002-*")
    assert (left / "model.safetensors").is_file()  # a whole model's weights: gigabytes for a real one
    assert not (run / "checkpoints" / "step-000002").exists()

    prepare(RunConfig(data=chat_data[0]), resume_dir=run)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == []


def test_final_replaced_by_a_killed_publish_is_kept(tiny_model_dir, chat_data, tmp_path):
    run = tmp_path / "run"
    _resumable_run(run, tiny_model_dir, chat_data[0])
    (run / "final").mkdir()
    (run / "final" / "tunery.json").write_text('{"old": true}')
    new = run / ".final.tmp"
    new.mkdir()
    (new / "tunery.json").write_text('{"new": true}')
    _killed(f"fsio.publish(Path({str(new)!r}), Path({str(run / 'final')!r}))")

    prepare(RunConfig(data=chat_data[0]), resume_dir=run)
    assert (run / "final" / "tunery.json").read_text() == '{"old": true}'
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
