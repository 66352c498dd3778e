"""Benchmark: concurrent chat through `tunery serve`, base alone and 1/2/8 LoRA adapters, against a peer.

Everything is real and on loopback only. A `tunery serve` subprocess (local mode) trains eight
adapters with its own worker, each answering every question with its own word ("pineapple",
"penguin", ...), all two tokens long in SmolLM2's tokenizer. Then one load phase per scenario and
concurrency: that many client threads, each with the official `openai` client, send chat requests
for a fixed time, while a probe asks `/health` every 50 ms.

Scenarios: `base` (the base model on a second `tunery serve` that never loads an adapter), `one`
(adapter A), `two` (A and B alternating per request, so most batches mix them), `eight` (A to H in
turn). A reply is correct only if it is exactly its adapter's word, so a request served with the
wrong adapter (rows mixed up in a micro-batch) counts as wrong, not just slow.

The peer, `transformers serve` (OpenAI-compatible), runs on the same base model, prompts,
max_tokens and thread count: as shipped (one request at a time) and with `--continuous-batching`.
It cannot load a peft adapter directory (it reads the model's config.json), so it compares with the
`base` rows. All servers start first and stay up; each concurrency then runs every row back to back,
so rows compared were measured minutes apart at most, and the load average at each phase's end is
in the table (a shared machine's load moves).

`--max-tokens` defaults to 3: an adapter's word and its end-of-turn token are three decoding steps,
and the base model, which does not stop that early, also runs three. So every request costs the
same forward passes, and req/s compares across rows; output tok/s counts only text tokens.

    .venv/bin/python bench/serve_load.py --home /tmp/serve-bench       # everything (~15 min on 2 cores)
    .venv/bin/python bench/serve_load.py --home /tmp/serve-bench --scenarios base two --peer transformers
    .venv/bin/python bench/serve_load.py --home /tmp/serve-bench --scenarios one eight --peer none
    .venv/bin/python bench/serve_load.py --home /tmp/serve-bench --train-only   # just train the adapters

`--home` keeps the server's home, so adapters trained once are reused by later runs (split a long
matrix into shorter runs that way). Prints one line per phase as it goes, then a Markdown block.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
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
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Two tokens each in SmolLM2's tokenizer, so every adapter's answer costs the same decoding steps.
WORDS = {
    "A": "pineapple",
    "B": "penguin",
    "C": "lantern",
    "D": "cactus",
    "E": "walrus",
    "F": "violin",
    "G": "falcon",
    "H": "orchid",
}
SCENARIOS = {"base": "", "one": "A", "two": "AB", "eight": "ABCDEFGH"}
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
HEALTH_EVERY_S = 0.05
START_LOAD = " ".join(f"{x:.1f}" for x in os.getloadavg())


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


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class Phase:
    server: str
    scenario: str
    concurrency: int
    requests: int = 0
    errors: int = 0
    wrong: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    load: float = 0.0  # 1-minute load average at the end

    def row(self) -> dict:
        return {
            "server": self.server,
            "scenario": self.scenario,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "wrong": self.wrong,
            "requests_per_s": round(self.requests / self.seconds, 2),
            "output_tokens_per_s": round(self.completion_tokens / self.seconds, 1),
            "p50_s": round(percentile(self.latencies, 50), 3),
            "p95_s": round(percentile(self.latencies, 95), 3),
            "health_p50_ms": round(1000 * percentile(self.health, 50), 1),
            "health_p95_ms": round(1000 * percentile(self.health, 95), 1),
            "health_max_ms": round(1000 * max(self.health, default=float("nan")), 1),
            "load": round(self.load, 1),
        }


def wait_healthy(proc: subprocess.Popen, url: str, log: Path, what: str, timeout_s: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited; see {log}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} did not start; see {log}")


def start_server(
    home: Path, model: str, port: int, log: Path, threads: int | None = None, workers: int = 1
) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TUNERY_API_KEYS"}  # local mode: loopback only
    command = [sys.executable, "-m", "tunery", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--home", str(home), "--workers", str(workers), "--model", f"bench={model}"]
    if threads:
        command += ["--threads", str(threads)]
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    wait_healthy(proc, f"http://127.0.0.1:{port}/health", log, "tunery serve")
    return proc


def start_transformers_serve(model_dir: Path, port: int, log: Path, threads: int, batching: bool) -> subprocess.Popen:
    command = [str(Path(sys.executable).with_name("transformers")), "serve", str(model_dir)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--dtype", "float32"]
    command += ["--continuous-batching" if batching else "--no-continuous-batching", "--log-level", "warning"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    wait_healthy(proc, f"http://127.0.0.1:{port}/health", log, "transformers serve")
    return proc


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def train_adapters(client, tmp: Path, steps: int, lr_multiplier: float) -> dict[str, str]:
    """One job per word, run by the server's worker; returns {"A": model name, ...}."""
    jobs = {}
    for job in client.fine_tuning.jobs.list(limit=100):  # a reused --home may hold them already
        for key in WORDS:
            if job.status == "succeeded" and f":word-{key.lower()}:" in job.fine_tuned_model and key not in jobs:
                jobs[key] = job.id
    for index, (key, word) in enumerate(WORDS.items()):
        if key in jobs:
            continue
        data = write_dataset(tmp / f"{key}.jsonl", word, 40, seed=index)
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
    started = time.monotonic()
    for key, job_id in jobs.items():
        while (job := client.fine_tuning.jobs.retrieve(job_id)).status not in ("succeeded", "failed", "cancelled"):
            time.sleep(1)
        if job.status != "succeeded":
            raise SystemExit(f"training adapter {key} ended {job.status}: {job.error}")
        models[key] = job.fine_tuned_model
        print(
            f"adapter {key} ({WORDS[key]!r}): {job.fine_tuned_model} at {time.monotonic() - started:.0f}s", flush=True
        )
    return models


def ask(client, model: str, text: str, max_tokens: int):
    return client.chat.completions.create(
        model=model,
        temperature=0,
        max_tokens=max_tokens,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
    )


def probe_health(url: str, stop_event, out) -> None:
    """Ask `url` every HEALTH_EVERY_S until `stop_event`, then put the latencies on the queue `out`.

    It runs in a process of its own: in the load generator's process, its timings would include
    waiting for the GIL behind the client threads.
    """
    import httpx

    latencies = []
    with httpx.Client(timeout=30) as client:
        while not stop_event.is_set():
            started = time.perf_counter()
            try:
                client.get(url).raise_for_status()
                latencies.append(time.perf_counter() - started)
            except httpx.HTTPError as exc:
                print(f"health error: {exc}", file=sys.stderr)
                latencies.append(float("inf"))
            stop_event.wait(HEALTH_EVERY_S)
    out.put(latencies)


def load_phase(
    server: str,
    scenario: str,
    root_url: str,
    targets: list[tuple[str, str | None]],
    concurrency: int,
    duration: float,
    max_tokens: int,
) -> Phase:
    """`concurrency` clients for `duration` s, each cycling through `targets` (model, expected word or None)."""
    from openai import OpenAI

    phase = Phase(server, scenario, concurrency)
    lock = threading.Lock()
    deadline = time.monotonic() + duration
    processes = multiprocessing.get_context("spawn")
    stop_probe, probed = processes.Event(), processes.Queue()
    prober = processes.Process(target=probe_health, args=(f"{root_url}/health", stop_probe, probed))

    def client_loop(index: int) -> None:
        client = OpenAI(base_url=f"{root_url}/v1", api_key="local", max_retries=0, timeout=600)
        rng = random.Random(index)
        turn = index
        while time.monotonic() < deadline:
            model, word = targets[turn % len(targets)]
            turn += 1
            started = time.monotonic()
            try:
                reply = ask(client, model, question(rng), max_tokens)
                answer = (reply.choices[0].message.content or "").strip()
                error, wrong, tokens = 0, int(word is not None and answer != word), reply.usage.completion_tokens
            except Exception as exc:  # counted and reported, never hidden
                print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
                error, wrong, tokens = 1, 0, 0
            elapsed = time.monotonic() - started
            with lock:
                phase.requests += 1
                phase.errors += error
                phase.wrong += wrong
                phase.completion_tokens += tokens
                if not error:
                    phase.latencies.append(elapsed)

    prober.start()
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client_loop, range(concurrency)))
    phase.seconds = time.monotonic() - started
    phase.load = os.getloadavg()[0]
    stop_probe.set()
    phase.health = probed.get(timeout=60)
    prober.join()
    row = phase.row()
    print(
        f"{server} {scenario} c={concurrency}: {row['requests_per_s']} req/s, {row['output_tokens_per_s']} tok/s, "
        f"p50 {row['p50_s']} s, p95 {row['p95_s']} s, {phase.errors} errors, {phase.wrong} wrong, "
        f"/health p95 {row['health_p95_ms']} ms max {row['health_max_ms']} ms, load {row['load']}",
        flush=True,
    )
    return phase


@dataclass
class Side:
    """One row of the matrix: a server, and the models its clients cycle through."""

    server: str
    scenario: str
    root: str
    targets: list[tuple[str, str | None]]


def tunery_sides(args, tmp: Path, servers: ExitStack) -> list[Side]:
    """Two `tunery serve`: one that never loads an adapter (the base rows), one for the adapter rows."""
    from openai import OpenAI

    sides = []
    adapter_scenarios = [s for s in args.scenarios if SCENARIOS[s]]
    if adapter_scenarios or args.train_only:
        port = free_port()
        server = start_server(args.home or tmp / "home", args.model, port, tmp / "tunery.log", threads=args.threads)
        servers.callback(stop, server)
        root = f"http://127.0.0.1:{port}"
        client = OpenAI(base_url=f"{root}/v1", api_key="local", max_retries=0, timeout=600)
        models = train_adapters(client, tmp, args.train_steps, args.lr_multiplier)
        for scenario in adapter_scenarios:
            sides.append(Side("tunery", scenario, root, [(models[k], WORDS[k]) for k in SCENARIOS[scenario]]))
    if "base" in args.scenarios and not args.train_only:
        port = free_port()
        server = start_server(
            tmp / "base-home", args.model, port, tmp / "tunery-base.log", threads=args.threads, workers=0
        )
        servers.callback(stop, server)
        sides.insert(0, Side("tunery", "base", f"http://127.0.0.1:{port}", [("bench", None)]))
    return sides


def peer_sides(args, tmp: Path, servers: ExitStack) -> list[Side]:
    from tunery.models import resolve_model

    model_dir = str(resolve_model(args.model))
    sides = []
    for peer in args.peer:
        if peer == "none":
            continue
        batching = peer == "transformers-cb"
        port = free_port()
        log = tmp / f"{peer}.log"
        server = start_transformers_serve(Path(model_dir), port, log, args.threads, batching)
        servers.callback(stop, server)
        label = "transformers serve" + (" --continuous-batching" if batching else "")
        sides.append(Side(label, "base", f"http://127.0.0.1:{port}", [(model_dir, None)]))
    return sides


def warm_up(side: Side, max_tokens: int) -> None:
    """Loads each model (and adapter), and checks each adapter answers its word, before any load."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{side.root}/v1", api_key="local", max_retries=0, timeout=600)
    for model, word in side.targets:
        answer = (ask(client, model, question(random.Random(99)), max_tokens).choices[0].message.content or "").strip()
        if word is not None and answer != word:
            raise SystemExit(f"{model} answers {answer!r}, not {word!r}: raise --train-steps")


def report(args, phases: list[Phase]) -> str:
    rows = [p.row() for p in phases]
    base = {r["concurrency"]: r["requests_per_s"] for r in rows if r["server"] == "tunery" and r["scenario"] == "base"}
    lines = [
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average at the start {START_LOAD}, at the end "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        f"`{' '.join(['.venv/bin/python', 'bench/serve_load.py', *sys.argv[1:]])}`",
        f"model {args.model}, {args.threads} threads per server, max_tokens {args.max_tokens}, "
        f"{args.duration:g} s per phase, temperature 0",
        "",
        "| server | scenario | concurrency | requests | errors | wrong | req/s | × tunery base | output tok/s "
        "| p50 s | p95 s | /health p50 / p95 / max ms | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['requests_per_s'] / base[r['concurrency']]:.2f}" if base.get(r["concurrency"]) else ""
        lines.append(
            f"| {r['server']} | {r['scenario']} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['wrong']} "
            f"| {r['requests_per_s']} | {ratio} | {r['output_tokens_per_s']} | {r['p50_s']} | {r['p95_s']} "
            f"| {r['health_p50_ms']} / {r['health_p95_ms']} / {r['health_max_ms']} | {r['load']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="base model reference")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument(
        "--peer",
        nargs="+",
        choices=["transformers", "transformers-cb", "none"],
        default=["transformers", "transformers-cb"],
        help="peers to run after tunery: transformers serve as shipped, and with --continuous-batching",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16], help="client threads per phase")
    parser.add_argument("--duration", type=float, default=20, help="seconds of load per phase")
    parser.add_argument("--max-tokens", type=int, default=3, help="completion tokens per request at most")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads of each server")
    parser.add_argument("--train-steps", type=int, default=10, help="optimizer steps per adapter")
    parser.add_argument("--train-only", action="store_true", help="train the adapters (into --home) and stop")
    parser.add_argument("--home", type=Path, help="server home to keep (and reuse trained adapters from)")
    parser.add_argument("--lr-multiplier", type=float, default=2.0, help="learning_rate_multiplier of every job")
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args()
    # Let `kill` run the cleanup below, which stops the servers (each runs in its own session).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="tunery-serve-bench-") as tmp_name, ExitStack() as servers:
        tmp = Path(tmp_name)
        sides = tunery_sides(args, tmp, servers)
        if args.train_only:
            return 0
        sides += peer_sides(args, tmp, servers)
        for side in sides:
            warm_up(side, args.max_tokens)
        # Every server stays up and idle between its phases, and each concurrency runs all of them
        # back to back, so that the rows compared are measured minutes apart at most.
        for concurrency in args.concurrency:
            for side in sides:
                phases.append(
                    load_phase(
                        side.server, side.scenario, side.root, side.targets, concurrency, args.duration, args.max_tokens
                    )
                )
    text = report(args, phases)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"report": text, "rows": [p.row() for p in phases]}, indent=2))
    return 1 if any(p.errors or p.wrong for p in phases) else 0


if __name__ == "__main__":
    sys.exit(main())
