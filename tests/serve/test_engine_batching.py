"""How the generation thread groups concurrent requests into batches (no model: a stand-in forward pass)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tunery.serve.catalog import ServedModel
from tunery.serve.engine import ChatEngine, ChatJob, Sampling

MODEL = ServedModel("m", Path("base"), None, 8192)
FORWARD_S = 0.06  # longer than the gather window, as a real batch is


def serve(engine: ChatEngine, start_delays: list[float], seconds: float) -> list[int]:
    """Clients that each send a request, wait for its answer and send the next; the batch sizes served."""
    sizes: list[int] = []

    def generate(batch):
        sizes.append(len(batch))
        time.sleep(FORWARD_S)
        engine._expect_next(len(batch))
        for job in batch:
            job.emit(("done", {}))

    engine._generate = generate
    deadline = time.monotonic() + seconds

    def client(delay: float) -> None:
        time.sleep(delay)
        while time.monotonic() < deadline:
            answered = threading.Event()
            job = ChatJob(MODEL, [1], 1, lambda event, a=answered: a.set(), sampling=Sampling(temperature=0))
            engine.submit(job)
            assert answered.wait(10)

    clients = [threading.Thread(target=client, args=(d,)) for d in start_delays]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    engine.stop()
    return sizes


def test_clients_that_start_apart_end_up_in_one_batch():
    # Four clients, then four more after the first batch has started: the second four wait while the
    # first are served; from then on all eight must share each batch, not alternate as two halves.
    sizes = serve(ChatEngine(max_batch_size=8), [0.0] * 4 + [0.035] * 4, seconds=1.5)
    assert sizes[0] == 4
    assert sizes[-8:].count(8) >= 6, sizes


def test_a_lone_client_is_never_kept_waiting_for_others():
    engine = ChatEngine(max_batch_size=8)
    sizes = serve(engine, [0.0], seconds=0.3)
    assert set(sizes) == {1}
    assert engine._expected == 1  # its next request starts a batch the moment it arrives
