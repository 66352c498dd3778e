"""Fixtures for the server tests: `make_server` starts real `tunery serve` processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from serving import KEYS, ServerProcess, server_env


@pytest.fixture(scope="module")
def make_server(tmp_path_factory, tiny_model_dir):
    """Factory: `make_server(workers=1, keys=KEYS, args=[...])` → a started ServerProcess (stopped at the end)."""
    started: list[ServerProcess] = []

    def make(
        *, workers: int = 0, keys: dict | None = KEYS, args: list[str] | None = None, home: Path | None = None
    ) -> ServerProcess:
        home = home or tmp_path_factory.mktemp("server-home")
        server = ServerProcess(
            home=home,
            args=["--workers", str(workers), "--model", f"tiny={tiny_model_dir}", *(args or [])],
            env=server_env(keys),
            log=home.parent / f"{home.name}.log",
        )
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()
