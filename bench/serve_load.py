"""Benchmark: concurrent chat requests on two LoRA adapters of one base, through `tunery serve`.

Everything is real and on loopback only: a `tunery serve` subprocess (local mode, temp home), two
fine-tuning jobs run by its worker — adapter A learns to answer every question with one word,
adapter B with another — then a load phase per concurrency level: that many client threads,
each with the official `openai` client, send chat requests alternating between the two adapters
for a fixed time. A response is correct when it is exactly its adapter's word, so a request served
with the wrong adapter (say, rows mixed up in a micro-batch) counts as wrong, not just slow.

    .venv/bin/python bench/serve_load.py                          # SmolLM2-135M, concurrency 1 and 8
    .venv/bin/python bench/serve_load.py --concurrency 1 4 16 --duration 60 --home /tmp/bench-home  # reusable
    .venv/bin/python bench/serve_load.py --model ./my-model --train-steps 30

Reported per concurrency level: requests, errors, wrong answers, requests/s, p50/p95 latency.
The server's generation thread batches concurrent requests on the same base (rows on different
adapters included), so requests/s should rise with concurrency while latency grows slower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = {"A": "pineapple", "B": "volcano"}
TOPICS = [
    "the weather",
    "my order",
    "a refund",
    "the opening hours",
    "my password",
    "a broken lamp",
    "shipping to Spain",
    "the invoice",
    "a discount code",
    "the warranty",
    "gift wrapping",
    "a late parcel",
]
SYSTEM = "Answer with one word."


def question(rng: random.Random) -> str:
    return f"{rng.choice(['Hi,', 'Hello.', 'Quick one:', 'Sorry,'])} can you tell me about {rng.choice(TOPICS)}? ({rng.randint(1, 999)})"


def write_dataset(path: Path, word: str, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    with path.open("w") as fh:
        for _ in range(n):
            messages = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": question(rng)},
                {"role": "assistant", "content": word},
            ]
            fh.write(json.dumps({"messages": messages}) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Phase:
    concurrency: int
    requests: int
    errors: int
    wrong: int
    seconds: float
    latencies: list[float]

    def row(self) -> dict:
        import numpy as np

        latencies = np.asarray(self.latencies) if self.latencies else np.asarray([np.nan])
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "wrong": self.wrong,
            "requests_per_s": round(self.requests / self.seconds, 2),
            "p50_s": round(float(np.percentile(latencies, 50)), 3),
            "p95_s": round(float(np.percentile(latencies, 95)), 3),
        }


def start_server(home: Path, model: str, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TUNERY_API_KEYS"}  # local mode: loopback only
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tunery",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--home",
            str(home),
            "--workers",
            "1",
            "--model",
            f"bench={model}",
        ],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    import httpx

    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"tunery serve exited; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"tunery serve did not start; see {log}")


def train_adapters(client, tmp: Path, steps: int, lr_multiplier: float) -> dict[str, str]:
    """One job per word, run by the server's worker; returns {"A": model name, "B": model name}."""
    jobs = {}
    for job in client.fine_tuning.jobs.list(limit=100):  # a reused --home may hold them already
        for key in WORDS:
            if job.status == "succeeded" and f":word-{key.lower()}:" in job.fine_tuned_model and key not in jobs:
                jobs[key] = job.id
    for key, word in WORDS.items():
        if key in jobs:
            continue
        data = write_dataset(tmp / f"{key}.jsonl", word, 40, seed=len(jobs))
        uploaded = client.files.create(file=data.open("rb"), purpose="fine-tune")
        jobs[key] = client.fine_tuning.jobs.create(
            model="bench",
            training_file=uploaded.id,
            suffix=f"word-{key.lower()}",
            seed=0,
            method={
                "type": "supervised",
                "supervised": {
                    "hyperparameters": {"n_epochs": 10, "batch_size": 2, "learning_rate_multiplier": lr_multiplier},
                    "tunery": {"max_steps": steps, "save_every": steps, "lora": {"r": 8}},
                },
            },
        ).id
    models = {}
    for key, job_id in jobs.items():
        started = time.monotonic()
        while (job := client.fine_tuning.jobs.retrieve(job_id)).status not in ("succeeded", "failed", "cancelled"):
            time.sleep(1)
        if job.status != "succeeded":
            raise SystemExit(f"training adapter {key} ended {job.status}: {job.error}")
        models[key] = job.fine_tuned_model
        print(
            f"adapter {key} ({WORDS[key]!r}): {job.fine_tuned_model} after {time.monotonic() - started:.0f}s wait",
            flush=True,
        )
    return models


def ask(client, model: str, text: str, max_tokens: int) -> str:
    reply = client.chat.completions.create(
        model=model,
        temperature=0,
        max_tokens=max_tokens,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
    )
    return reply.choices[0].message.content.strip()


def load_phase(base_url: str, models: dict[str, str], concurrency: int, duration: float, max_tokens: int) -> Phase:
    from openai import OpenAI

    deadline = time.monotonic() + duration
    lock = threading.Lock()
    phase = Phase(concurrency, 0, 0, 0, 0.0, [])

    def client_loop(index: int) -> None:
        client = OpenAI(base_url=base_url, api_key="local", max_retries=0, timeout=600)
        rng = random.Random(index)
        turn = index
        while time.monotonic() < deadline:
            key = "AB"[turn % 2]
            turn += 1
            started = time.monotonic()
            try:
                answer = ask(client, models[key], question(rng), max_tokens)
                error, wrong = 0, int(answer != WORDS[key])
            except Exception as exc:  # counted and reported, never hidden
                print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
                error, wrong = 1, 0
            elapsed = time.monotonic() - started
            with lock:
                phase.requests += 1
                phase.errors += error
                phase.wrong += wrong
                if not error:
                    phase.latencies.append(elapsed)

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client_loop, range(concurrency)))
    phase.seconds = time.monotonic() - started
    return phase


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="base model reference")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="client threads per phase")
    parser.add_argument("--duration", type=float, default=30, help="seconds of load per phase")
    parser.add_argument("--max-tokens", type=int, default=4, help="completion tokens per request at most")
    parser.add_argument("--train-steps", type=int, default=10, help="optimizer steps per adapter")
    parser.add_argument("--home", type=Path, help="server home to keep (and reuse trained adapters from)")
    parser.add_argument("--lr-multiplier", type=float, default=2.0, help="learning_rate_multiplier of both jobs")
    args = parser.parse_args()
    # Let `kill` run the cleanup below, which stops the server (it runs in its own session).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from openai import OpenAI

    with tempfile.TemporaryDirectory(prefix="tunery-serve-bench-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        log = tmp / "server.log"
        server = start_server(args.home or tmp / "home", args.model, port, log)
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            client = OpenAI(base_url=base_url, api_key="local", max_retries=0, timeout=600)
            models = train_adapters(client, tmp, args.train_steps, args.lr_multiplier)
            for key, model in models.items():  # both adapters answer their own word before any load
                answer = ask(client, model, question(random.Random(99)), args.max_tokens)
                if answer != WORDS[key]:
                    raise SystemExit(f"adapter {key} answers {answer!r}, not {WORDS[key]!r}: raise --train-steps")
            results = [load_phase(base_url, models, c, args.duration, args.max_tokens).row() for c in args.concurrency]
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(120)
    print(
        json.dumps(
            {
                "model": args.model,
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "duration_s": args.duration,
                "max_tokens": args.max_tokens,
                "results": results,
            },
            indent=2,
        )
    )
    header = f"{'concurrency':>11} {'requests':>8} {'errors':>6} {'wrong':>5} {'req/s':>7} {'p50 s':>7} {'p95 s':>7}"
    print(header)
    for r in results:
        print(
            f"{r['concurrency']:>11} {r['requests']:>8} {r['errors']:>6} {r['wrong']:>5} "
            f"{r['requests_per_s']:>7} {r['p50_s']:>7} {r['p95_s']:>7}"
        )
    return 1 if any(r["errors"] or r["wrong"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
