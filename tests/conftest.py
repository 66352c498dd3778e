"""Shared fixtures: a tiny random model and tokenizer built offline, and the real default model.

The tiny model is a 2-layer Llama with a small byte-level BPE tokenizer and a ChatML template.
It is built once per test session in seconds, so unit tests never touch the network or SmolLM2.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from builders import (  # noqa: F401  (re-exported for tests that import them from here)
    CHATML,
    EXAMPLES,
    REPO,
    build_tiny_model,
    build_tiny_tokenizer,
    run_cli,
    write_chat_dataset,
    write_preference_dataset,
)

# Converted models are cached across test runs (the GGUF conversion takes ~25 s).
os.environ.setdefault("TUNERY_HOME", str(REPO / ".tunery-home"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama (2 layers, 64 dims) with a ChatML tokenizer, built offline."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real embedded default, SmolLM2-135M-Instruct, converted once and cached."""
    from tunery.models import DEFAULT_MODEL, resolve_model

    return resolve_model(DEFAULT_MODEL)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def chat_data(tmp_path_factory) -> tuple[Path, Path]:
    """(train.jsonl, valid.jsonl): 48 and 12 short labelling examples."""
    root = tmp_path_factory.mktemp("chat-data")
    return write_chat_dataset(root / "train.jsonl", 48, seed=1), write_chat_dataset(root / "valid.jsonl", 12, seed=2)


@pytest.fixture(scope="session")
def preference_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pref-data")
    return (
        write_preference_dataset(root / "train.jsonl", 32, seed=1),
        write_preference_dataset(root / "valid.jsonl", 12, seed=2),
    )


@pytest.fixture
def webhook():
    """A real HTTP server on 127.0.0.1 that keeps the JSON bodies POSTed to it."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            self.server.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    server.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def tuned_run(tiny_model_dir, chat_data, tmp_path_factory):
    """One finished tiny LoRA run named `labeller`, through `tunery.train`: 6 steps, checkpoints at 3
    and 6, graded on the validation file at the end. Shared, so tests only read it."""
    import tunery

    out = tmp_path_factory.mktemp("tuned") / "labeller"
    return tunery.train(
        model=str(tiny_model_dir), data=chat_data[0], validation=chat_data[1], output=out,
        n_epochs=1, batch_size=8, save_every=3, lora={"r": 4}, seed=3,
    )  # fmt: skip
