"""Fixtures for the dashboard tests: one real `tunery serve` for the session, and headless Chromium.

The server runs the tiny model with two job slots. As soon as it is up, a short job is created
through the real openai client and, once it succeeds, `tunery compare` writes a report into the
job's evals/ folder, in a background thread: by the time the playground and evaluation tests run,
there is a fine-tuned model to chat with and a report to read.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

# The server harness of tests/serve (a real `tunery serve` subprocess), reused rather than copied.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from browsing import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from builders import run_cli, write_chat_dataset  # noqa: E402
from serving import KEYS, ServerProcess, server_env, wait_for_status  # noqa: E402

# Four steps, checkpoints on the way: a servable model in seconds on the tiny model.
SHORT_JOB = {
    "type": "supervised",
    "supervised": {
        "hyperparameters": {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 30},
        "tunery": {"max_steps": 4, "save_every": 2, "eval_every": 2, "lora": {"r": 4}},
    },
}


@dataclass
class Dashboard:
    server: ServerProcess
    train: Path  # chat training data (48 examples)
    valid: Path  # chat validation data (12 examples)
    short_job_id: str
    evaluated: Future  # → (succeeded job, compare-report.json path)
    tunery_home: Path  # the server's $TUNERY_HOME: its registry of runs, reports and monitor suites

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


def _finish_and_compare(dashboard_server: ServerProcess, job_id: str, train: Path, held_out: Path, env: dict):
    """Wait for the short job, then write `tunery compare`'s report where the dashboard reads it."""
    job = wait_for_status(dashboard_server.client(), job_id, {"succeeded", "failed", "cancelled"}, timeout=600)
    assert job.status == "succeeded", job.error
    run = dashboard_server.home / "jobs" / job_id / "run"
    report = dashboard_server.home / "jobs" / job_id / "evals" / "compare-report.json"
    # With both forgetting measures (240 questions × 2 systems, 310 answers read twice): seconds on the tiny model.
    done = run_cli(
        "compare",
        "--tuned",
        run,
        "--train",
        train,
        "--data",
        held_out,
        "--shots",
        "1",
        "--max-new-tokens",
        "4",
        "--output",
        report,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return job, report


def write_regex_held_out(path: Path) -> Path:
    """Six held-out examples graded by regex; two accept any answer (`/.*/`), so that whatever the
    tiny model says, the evaluation page has both passes and failures to filter."""
    write_chat_dataset(path, 6, seed=3)
    examples = [json.loads(line) for line in path.read_text().splitlines()]
    for i, example in enumerate(examples):
        answer = example["messages"][-1]
        answer["content"] = "/.*/" if i in (1, 4) else f"/^{answer['content']}$/"
    path.write_text("".join(json.dumps(example) + "\n" for example in examples))
    return path


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory, tiny_model_dir) -> Iterator[Dashboard]:
    root = tmp_path_factory.mktemp("dashboard")
    train = write_chat_dataset(root / "train.jsonl", 48, seed=1)
    valid = write_chat_dataset(root / "valid.jsonl", 12, seed=2)
    held_out = write_regex_held_out(root / "held-out.jsonl")
    # Its own $TUNERY_HOME (registry) and only the tiny model: nothing here reads or writes the
    # developer's home, and no page waits for SmolLM2 to load.
    home_env = {"TUNERY_HOME": str(root / "tunery-home")}
    config = root / "server.yaml"
    config.write_text(f"models: {{tiny: '{tiny_model_dir}'}}\n")
    server = ServerProcess(
        home=root / "home",
        args=["--workers", "2", "--config", str(config)],
        env={**server_env(KEYS), **home_env},
        log=root / "server.log",
    ).start()
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        alpha = server.client("sk-alpha")
        train_file = alpha.files.create(file=train.open("rb"), purpose="fine-tune")
        valid_file = alpha.files.create(file=valid.open("rb"), purpose="fine-tune")
        job = alpha.fine_tuning.jobs.create(
            model="tiny",
            training_file=train_file.id,
            validation_file=valid_file.id,
            suffix="web",
            seed=7,
            method=SHORT_JOB,
        )
        evaluated = pool.submit(_finish_and_compare, server, job.id, train, held_out, home_env)
        yield Dashboard(
            server=server,
            train=train,
            valid=valid,
            short_job_id=job.id,
            evaluated=evaluated,
            tunery_home=root / "tunery-home",
        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        server.stop()


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("the browser tests need Debian's chromium: apt-get install -y chromium (.ci/run does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser, dashboard):
    """open_page(key="sk-alpha", width=1360) → a fresh browser page whose localStorage holds that API key.

    The test fails if any page threw a JavaScript error or logged one.
    """
    contexts = []
    errors: list[str] = []

    def open_with(key: str | None = "sk-alpha", width: int = 1360):
        context = browser.new_context(viewport={"width": width, "height": 900}, base_url=dashboard.url)
        if key:
            context.add_init_script(f"localStorage.setItem('tunery.apiKey', {key!r})")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on("console", lambda msg: msg.type == "error" and not _api_status(msg.text) and errors.append(msg.text))
        return page

    yield open_with
    for context in contexts:
        context.close()
    assert not errors, errors


def _api_status(text: str) -> bool:
    # Chromium logs every non-2xx response; the pages show those as error states, and some tests
    # provoke them (a missing key, another organisation's job).
    return text.startswith("Failed to load resource: the server responded with a status of")
