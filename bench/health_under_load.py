"""Benchmark: does `/health` stay cheap while a flood of `/v1/models` requests hits `tunery serve`?

Everything is on loopback and bounded: a `tunery serve` subprocess (local mode, temp home, no
model loaded: listing models reads the store and stats files), then two phases of `--duration`
seconds each. Phase "alone": one prober asks `/health` every 20 ms. Phase "flood": the same
prober, while `--concurrency` client threads send `/v1/models` back to back. Both phases stop by
themselves.

    .venv/bin/python bench/health_under_load.py                    # 50 flooding clients, 10 s per phase
    .venv/bin/python bench/health_under_load.py --concurrency 100 --duration 20

Reported per phase: /health probes, their p50/p95/max latency, and /v1/models requests/s. A
health check that waits behind the flood (a sync route queues for the same thread pool as the
flood) shows up as a p95 far above the "alone" phase.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import free_port, start_server  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def probe(base: str, stop: threading.Event, out: list[float]) -> None:
    import httpx

    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            client.get(f"{base}/health").raise_for_status()
            out.append(time.perf_counter() - start)
            time.sleep(0.02)


def flood(base: str, stop: threading.Event, counter: list[int]) -> None:
    import httpx

    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            client.get(f"{base}/v1/models", headers={"Authorization": "Bearer local"}).raise_for_status()
            counter.append(1)


def phase(base: str, concurrency: int, duration: float) -> dict:
    stop = threading.Event()
    latencies: list[float] = []
    served: list[int] = []
    threads = [threading.Thread(target=probe, args=(base, stop, latencies))]
    threads += [threading.Thread(target=flood, args=(base, stop, served)) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(duration)
    stop.set()
    for thread in threads:
        thread.join()
    return {
        "flooding clients": concurrency,
        "health probes": len(latencies),
        "health p50 ms": round(1000 * statistics.median(latencies), 1),
        "health p95 ms": round(1000 * percentile(latencies, 0.95), 1),
        "health max ms": round(1000 * max(latencies), 1),
        "models req/s": round(len(served) / duration, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=50, help="clients flooding /v1/models")
    parser.add_argument("--duration", type=float, default=10, help="seconds per phase")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="the base model the server lists")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start_server(Path(tmp) / "home", args.model, port, Path(tmp) / "serve.log")
        base = f"http://127.0.0.1:{port}"
        try:
            rows = [phase(base, 0, args.duration), phase(base, args.concurrency, args.duration)]
        finally:
            server.terminate()
            server.wait(60)
    print(
        f"date {time.strftime('%Y-%m-%d %H:%M')} UTC, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
