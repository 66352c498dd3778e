"""A real `tunery serve` started with TUNERY_LOG_PROMPTS=1 logs the prompts of chat requests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from builders import REPO, stop_process

from tunery.monitor.prompt_log import log_path, read_log


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat(port: int, text: str) -> dict:
    body = {"model": "tiny", "messages": [{"role": "user", "content": text}], "max_tokens": 2}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def serve(home, model_dir, port: int, log_prompts: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TUNERY_API_KEYS"}
    env.update(TUNERY_HOME=str(home), TUNERY_LOG_PROMPTS=log_prompts)
    argv = [
        "serve",
        "--port",
        str(port),
        "--home",
        str(home / "server"),
        "--workers",
        "0",
        "--model",
        f"tiny={model_dir}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunery", *argv],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "tunery serve exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return proc
        except OSError:
            time.sleep(0.3)
    raise AssertionError("tunery serve did not come up")


def test_the_server_logs_chat_prompts_when_asked(tiny_model_dir, tmp_path):
    """(Off by default: test_prompt_log.py checks the switch itself, without a server.)"""
    port = free_port()
    proc = serve(tmp_path, tiny_model_dir, port, "1")
    try:
        assert chat(port, "where is my parcel")["object"] == "chat.completion"
        chat(port, "my invoice is wrong")
    finally:
        stop_process(proc)
    logged = list(read_log(log_path(tmp_path, "tiny")))
    assert [p.messages for p in logged] == [
        [{"role": "user", "content": "where is my parcel"}],
        [{"role": "user", "content": "my invoice is wrong"}],
    ]
    assert all(p.model == "tiny" for p in logged)
