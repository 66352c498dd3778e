"""The judge grader against real OpenAI-compatible HTTP endpoints, through the real openai client.

Two endpoints: a small HTTP server written here that speaks the chat-completions protocol and
judges by a rule a test can predict (CORRECT when the graded answer equals the reference, after
case and punctuation folding), and a real `tunery serve` with the tiny model, whose random replies
must come back as a clear error rather than a score.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from builders import REPO, stop_process

from tunery.errors import TuneryError
from tunery.graders import resolve_graders
from tunery.graders.judge import INSTRUCTIONS, JudgeConfig, judge_scores
from tunery.graders.normalized import normalize

KEY = "sk-judge-test"
ENV = {"OMP_NUM_THREADS": "1"}


class RuleJudge(BaseHTTPRequestHandler):
    """POST /v1/chat/completions: CORRECT iff the answer normalises to the reference.

    The model "rambler" replies without a verdict word; a wrong bearer key gets a 401.
    """

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            return self._send(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
        found = re.search(r"Reference answer:\n(.*)\n\nAnswer to grade:\n(.*)\Z", body["messages"][-1]["content"], re.S)
        if body["model"] == "rambler":
            reply = "Hard to say."
        else:
            reply = "CORRECT" if normalize(found.group(1)) == normalize(found.group(2)) else "INCORRECT"
        self._send(
            200,
            {
                "id": f"chatcmpl-{len(self.server.requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), RuleJudge)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def judge_env(server, model: str = "rule-judge") -> dict:
    return {
        "TUNERY_JUDGE_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}/v1",
        "TUNERY_JUDGE_MODEL": model,
        "TUNERY_JUDGE_API_KEY": KEY,
    }


def test_tunery_eval_scores_with_a_judge_endpoint(cli, tuned_run, ticket_files, judge_server, tmp_path):
    """The tuned adapter answers the true label. Three held-out labels are flipped here, so the
    judge must say INCORRECT on exactly those three and CORRECT wherever exact match is 1."""
    rows = [json.loads(line) for line in ticket_files["heldout"].read_text().splitlines()]
    for row in rows[:3]:
        answer = row["messages"][-1]
        answer["content"] = {"billing": "account", "account": "billing"}[answer["content"]]
    heldout = tmp_path / "flipped.jsonl"
    heldout.write_text("".join(json.dumps(row) + "\n" for row in rows))

    out = tmp_path / "judged.json"
    result = cli(
        "eval", "--adapter", tuned_run, "--data", heldout, "--graders", "exact,judge",
        "--no-loss", "--json", "--output", out, env={**ENV, **judge_env(judge_server)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["graders"] == ["exact", "judge"] and report["skipped"] == {}
    answers = [json.loads(line) for line in out.with_name("judged.examples.jsonl").read_text().splitlines()]
    assert [a["scores"]["judge"] for a in answers] == [a["scores"]["exact"] for a in answers]
    assert [a["scores"]["judge"] for a in answers][:3] == [0.0, 0.0, 0.0]
    assert report["metrics"]["judge"]["mean"] == report["metrics"]["exact"]["mean"] == 5 / 8

    # One request per answer, as the judge module promises: greedy, short, with the key, the
    # grading instructions, the conversation, the reference and the answer.
    by_question = {answer["prompt"][1]["content"]: answer for answer in answers}
    asked = [re.search(r"\nuser: (.*)\n", r["body"]["messages"][1]["content"]).group(1) for r in judge_server.requests]
    assert sorted(asked) == sorted(by_question)
    for request, question in zip(judge_server.requests, asked, strict=True):
        answer, body = by_question[question], request["body"]
        assert request["path"] == "/v1/chat/completions" and request["auth"] == f"Bearer {KEY}"
        assert body["model"] == "rule-judge" and body["temperature"] == 0.0 and body["max_tokens"] == 8
        assert body["messages"][0] == {"role": "system", "content": INSTRUCTIONS}
        assert body["messages"][1]["content"] == (
            f"Conversation:\nsystem: {answer['prompt'][0]['content']}\nuser: {question}\n\n"
            f"Reference answer:\n{answer['reference']}\n\nAnswer to grade:\n{answer['output']}"
        )


def test_a_judge_without_a_verdict_or_with_a_wrong_key_is_a_clear_error(judge_server):
    url = f"http://127.0.0.1:{judge_server.server_address[1]}/v1"
    prompt = [[{"role": "user", "content": "2+2?"}]]
    with pytest.raises(TuneryError, match="the judge model 'rambler' replied 'Hard to say.', which is neither"):
        judge_scores(prompt, ["4"], ["4"], JudgeConfig(base_url=url, model="rambler", api_key=KEY))
    with pytest.raises(TuneryError, match=r"the judge at .* \(model 'rule-judge'\) failed: AuthenticationError"):
        judge_scores(prompt, ["4"], ["4"], JudgeConfig(base_url=url, model="rule-judge", api_key="sk-wrong"))
    assert judge_scores(prompt * 2, ["4", "5"], ["4", "4"], JudgeConfig(base_url=url, model="j", api_key=KEY)) == [
        1.0,
        0.0,
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tunery_server(tiny_model_dir, tmp_path):
    """`tunery serve` (API only) offering the tiny model as "tiny", on a free loopback port."""
    import httpx

    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    env = {k: v for k, v in os.environ.items() if k != "TUNERY_API_KEYS"} | ENV
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunery", "serve", "--port", str(port), "--home", str(tmp_path / "home"),
         "--workers", "0", "--model", f"tiny={tiny_model_dir}"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "tunery serve did not come up in 90 s"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process(proc)
        log.close()


def test_the_judge_request_is_accepted_by_tunery_serve(tunery_server, monkeypatch):
    """tunery's own OpenAI-compatible server takes the judge's request as it is (a refused field
    would surface as "failed: BadRequestError"); the random tiny model then replies with no verdict
    word, which must be an error naming the model and its reply, never a silent score."""
    monkeypatch.setenv("TUNERY_JUDGE_BASE_URL", tunery_server)
    monkeypatch.setenv("TUNERY_JUDGE_MODEL", "tiny")
    (judge,), skipped = resolve_graders(["judge"], ["4"], ["f:1"])
    assert skipped == {}
    with pytest.raises(
        TuneryError, match=r"the judge model 'tiny' replied '.*', which is neither CORRECT nor INCORRECT"
    ):
        judge.score([[{"role": "user", "content": "What is 2+2?"}]], ["4"], ["4"])
