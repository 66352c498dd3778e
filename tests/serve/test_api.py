"""The API without training (workers=0): files, auth and isolation, job requests, models, chat on a base."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
from serving import server_env

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(make_server):
    return make_server(workers=0, args=["--max-upload-mb", "1"])


@pytest.fixture(scope="module")
def alpha(server):
    return server.client("sk-alpha")


@pytest.fixture(scope="module")
def beta(server):
    return server.client("sk-beta")


@pytest.fixture(scope="module")
def training_file(alpha, chat_data):
    return alpha.files.create(file=chat_data[0].open("rb"), purpose="fine-tune")


# -- files -------------------------------------------------------------------------------------


def test_a_valid_training_file_is_processed_and_served_back(alpha, training_file, chat_data):
    assert training_file.status == "processed" and training_file.status_details is None
    assert training_file.id.startswith("file-") and training_file.filename == "train.jsonl"
    assert training_file.bytes == chat_data[0].stat().st_size
    assert alpha.files.retrieve(training_file.id) == training_file
    assert alpha.files.content(training_file.id).content == chat_data[0].read_bytes()


def test_a_malformed_file_ends_in_error_naming_its_lines(alpha, tmp_path):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    lines = [
        json.dumps(good),
        "this is not json",
        json.dumps({"messages": [{"role": "user", "content": "no answer"}]}),
        *[json.dumps(good).replace("hi", f"hi {i}") for i in range(10)],
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    uploaded = alpha.files.create(file=path.open("rb"), purpose="fine-tune")
    assert uploaded.status == "error"
    assert "line 2" in uploaded.status_details and "line 3" in uploaded.status_details
    # A job cannot be created on it; the error repeats the lines.
    with pytest.raises(openai.BadRequestError, match="line 2"):
        alpha.fine_tuning.jobs.create(model="tiny", training_file=uploaded.id)


def test_files_paginate_with_after_and_order(alpha, tmp_path):
    ids = []
    for i in range(3):
        (tmp_path / f"n{i}.txt").write_text(f"note {i}")
        ids.append(alpha.files.create(file=(tmp_path / f"n{i}.txt").open("rb"), purpose="user_data").id)
    page = alpha.files.list(purpose="user_data", limit=2)
    assert [f.id for f in page.data] == ids[::-1][:2] and page.has_more
    assert [f.id for f in page.get_next_page().data] == ids[:1]
    assert [f.id for f in alpha.files.list(purpose="user_data", limit=2, order="asc")] == ids  # auto-paging


def chunked_multipart(payload: bytes, boundary: str = "tunery-test-boundary"):
    """A multipart body sent without a Content-Length, so only counting while receiving can stop it."""
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
    ).encode()
    for start in range(0, len(payload), 64 * 1024):
        yield payload[start : start + 64 * 1024]
    yield f"\r\n--{boundary}--\r\n".encode()


def test_uploads_over_the_limit_are_refused_and_leave_nothing(alpha, server, tmp_path):
    files_dir = server.home / "files"
    before = sorted(files_dir.iterdir())
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"x" * (MiB + MiB // 2))
    with pytest.raises(openai.APIStatusError) as err:
        alpha.files.create(file=path.open("rb"), purpose="fine-tune")
    assert err.value.status_code == 413 and err.value.body["code"] == "file_too_large"
    # Streamed without a declared length, the upload is cut at the limit while it arrives.
    response = httpx.post(
        f"{server.base_url}/files",
        content=chunked_multipart(path.read_bytes()),
        headers={
            "Authorization": "Bearer sk-alpha",
            "Content-Type": "multipart/form-data; boundary=tunery-test-boundary",
        },
        timeout=60,
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "file_too_large"
    assert "1048576 bytes" in response.json()["error"]["message"]
    assert sorted(files_dir.iterdir()) == before  # no partial file left behind
    assert path.name not in [f.filename for f in alpha.files.list()]


def test_a_client_filename_is_never_used_as_a_path(alpha, server, tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("payload")
    uploaded = alpha.files.create(file=("../../escape.txt", path.open("rb")), purpose="user_data")
    assert uploaded.filename == "../../escape.txt"
    assert (server.home / "files" / uploaded.id).read_text() == "payload"
    assert not (server.home.parent / "escape.txt").exists() and not (server.home / "escape.txt").exists()


def test_delete_removes_the_file(alpha, tmp_path):
    path = tmp_path / "gone.txt"
    path.write_text("bye")
    uploaded = alpha.files.create(file=path.open("rb"), purpose="user_data")
    assert alpha.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        alpha.files.retrieve(uploaded.id)


# -- auth and isolation ------------------------------------------------------------------------


def test_requests_without_a_valid_key_get_401(server):
    response = httpx.get(f"{server.base_url}/files")
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(openai.AuthenticationError):
        server.client("sk-wrong").models.list()


def test_another_organisation_sees_404_for_files_and_jobs(alpha, beta, training_file):
    job = alpha.fine_tuning.jobs.create(model="tiny", training_file=training_file.id)
    for call in (
        lambda: beta.files.retrieve(training_file.id),
        lambda: beta.files.content(training_file.id),
        lambda: beta.files.delete(training_file.id),
        lambda: beta.fine_tuning.jobs.retrieve(job.id),
        lambda: beta.fine_tuning.jobs.cancel(job.id),
        lambda: beta.fine_tuning.jobs.list_events(job.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert training_file.id not in [f.id for f in beta.files.list()]
    assert job.id not in [j.id for j in beta.fine_tuning.jobs.list()]
    # Nor can it train on another organisation's file.
    with pytest.raises(openai.BadRequestError, match="no such file"):
        beta.fine_tuning.jobs.create(model="tiny", training_file=training_file.id)
    alpha.fine_tuning.jobs.cancel(job.id)


# -- job requests (no worker runs them here) ---------------------------------------------------


def test_job_creation_validates_the_request(alpha, training_file):
    jobs = alpha.fine_tuning.jobs
    cases = [
        ({"method": {"type": "reinforcement", "reinforcement": {}}}, "grader"),
        ({"model": "gpt-4o-mini"}, "not available"),
        ({"method": {"type": "supervised", "supervised": {"tunery": {"model": "x"}}}}, "cannot be set"),
        ({"method": {"type": "supervised", "supervised": {"tunery": {"lora": {"r": 0}}}}}, "lora.r"),
        ({"method": {"type": "supervised", "supervised": {"tunery": {"no_such_key": 1}}}}, "unknown key"),
        ({"suffix": "has:colon"}, "suffix"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "16"),
        (
            {
                "hyperparameters": {"n_epochs": 2},
                "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}},
            },
            "not both",
        ),
        (
            {"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}},
            "n_epochs must be 'auto' or a whole number from 1 to 10000, got 0",
        ),
        ({"validation_file": training_file.id}, r"validation_file is the training file \(train.jsonl\)"),
    ]
    for extra, message in cases:
        with pytest.raises(openai.BadRequestError, match=message) as err:
            jobs.create(**{"model": "tiny", "training_file": training_file.id, **extra})
        assert err.value.body["message"]


def test_a_validation_file_sharing_examples_with_the_training_file_is_refused(
    alpha, training_file, chat_data, tmp_path
):
    lines = chat_data[0].read_text().splitlines()
    overlapping = tmp_path / "valid.jsonl"
    overlapping.write_text("\n".join([*chat_data[1].read_text().splitlines(), lines[4]]) + "\n")
    valid = alpha.files.create(file=overlapping.open("rb"), purpose="fine-tune")
    assert valid.status == "processed"
    with pytest.raises(openai.BadRequestError) as err:
        alpha.fine_tuning.jobs.create(model="tiny", training_file=training_file.id, validation_file=valid.id)
    assert err.value.body["code"] == "train_validation_overlap" and err.value.body["param"] == "validation_file"
    assert (
        "valid.jsonl shares 1 example(s) with training_file train.jsonl (first: train.jsonl line 5"
        in err.value.body["message"]
    )
    assert str(tmp_path) not in err.value.body["message"]
    assert not [j for j in alpha.fine_tuning.jobs.list() if j.validation_file == valid.id]


def test_job_states_pagination_and_metadata_filter(alpha, training_file):
    created = [
        alpha.fine_tuning.jobs.create(
            model="tiny",
            training_file=training_file.id,
            suffix="pg",
            seed=5,
            metadata={"batch": "pagination", "i": str(i)},
            hyperparameters={"n_epochs": 2},  # the deprecated field still works
        )
        for i in range(3)
    ]
    first = created[0]
    assert first.status == "validating_files" and first.seed == 5
    assert first.hyperparameters.n_epochs == 2 and first.method.type == "supervised"
    assert first.hyperparameters.batch_size == "auto"
    page = alpha.fine_tuning.jobs.list(limit=2, metadata={"batch": "pagination"})
    assert [j.id for j in page.data] == [created[2].id, created[1].id] and page.has_more
    assert [j.id for j in page.get_next_page().data] == [first.id]
    assert [j.id for j in alpha.fine_tuning.jobs.list(metadata={"i": "1"})] == [created[1].id]
    # OpenAI's literal `metadata=null` lists the jobs without metadata.
    plain = alpha.fine_tuning.jobs.create(model="tiny", training_file=training_file.id)
    without = list(alpha.fine_tuning.jobs.list(extra_query={"metadata": "null"}))
    assert plain.id in [j.id for j in without] and all(not j.metadata for j in without)
    assert not {j.id for j in created} & {j.id for j in without}
    with pytest.raises(openai.BadRequestError, match="metadata"):
        alpha.fine_tuning.jobs.list(extra_query={"metadata": "yes"})
    alpha.fine_tuning.jobs.cancel(plain.id)

    with pytest.raises(openai.ConflictError, match="cannot be paused"):
        alpha.fine_tuning.jobs.pause(first.id)
    with pytest.raises(openai.ConflictError, match="cannot be resumed"):
        alpha.fine_tuning.jobs.resume(first.id)
    cancelled = alpha.fine_tuning.jobs.cancel(first.id)
    assert cancelled.status == "cancelled" and cancelled.error.code == "cancelled" and cancelled.finished_at
    with pytest.raises(openai.ConflictError):
        alpha.fine_tuning.jobs.cancel(first.id)
    messages = [e.message for e in alpha.fine_tuning.jobs.list_events(first.id)]
    assert messages[0] == "Fine-tuning job cancelled" and messages[-1].startswith("Created fine-tuning job")
    for job in created[1:]:
        alpha.fine_tuning.jobs.cancel(job.id)


# -- models and chat on a base model -----------------------------------------------------------


def test_models_list_the_configured_bases(alpha):
    ids = [m.id for m in alpha.models.list()]
    assert "tiny" in ids and "smollm2-135m-instruct" in ids
    assert alpha.models.retrieve("tiny").owned_by == "tunery"
    with pytest.raises(openai.PermissionDeniedError):
        alpha.models.delete("tiny")
    with pytest.raises(openai.NotFoundError):
        alpha.models.retrieve("ft:tiny:org-beta::nope")


def test_chat_on_a_base_model_streams_what_it_returns(alpha):
    request = dict(model="tiny", messages=[{"role": "user", "content": "hello world"}], max_tokens=12, temperature=0)
    reply = alpha.chat.completions.create(**request)
    assert reply.object == "chat.completion" and reply.choices[0].finish_reason in ("stop", "length")
    usage = reply.usage
    assert usage.completion_tokens <= 12 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    chunks = list(alpha.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == reply.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage.total_tokens == usage.total_tokens and chunks[-1].choices == []
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [reply.choices[0].finish_reason]


def test_chat_sampling_options(alpha):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    two = alpha.chat.completions.create(model="tiny", messages=messages, n=2, max_completion_tokens=5, temperature=0)
    assert [c.index for c in two.choices] == [0, 1]
    assert two.choices[0].message.content == two.choices[1].message.content  # greedy twice
    assert two.usage.completion_tokens <= 10
    sample = dict(model="tiny", messages=messages, max_tokens=24, temperature=1.0, top_p=0.95, seed=3)
    texts = [alpha.chat.completions.create(**sample).choices[0].message.content for _ in range(2)]
    assert texts[0] == texts[1]  # the same seed, the same sample
    # Stop at an ASCII pair that first occurs mid-text: the answer is cut just before it.
    text = texts[0]
    cut = next(
        i
        for i in range(2, len(text) - 1)
        if text[i : i + 2].isascii() and text[i : i + 2].isalnum() and text.index(text[i : i + 2]) == i
    )
    stopped = alpha.chat.completions.create(**sample, stop=[text[cut : cut + 2]])
    assert stopped.choices[0].message.content == text[:cut]
    assert stopped.choices[0].finish_reason == "stop"
    # top_p keeps only the most likely token once the nucleus is tiny: sampling becomes greedy.
    greedy = alpha.chat.completions.create(model="tiny", messages=messages, max_tokens=24, temperature=0)
    nucleus = alpha.chat.completions.create(model="tiny", messages=messages, max_tokens=24, top_p=1e-6, seed=4)
    assert nucleus.choices[0].message.content == greedy.choices[0].message.content
    assert texts[0] != greedy.choices[0].message.content  # whereas the full nucleus samples


def test_n_choices_stream_each_and_a_seed_repeats_them(alpha):
    request = dict(model="tiny", messages=[{"role": "user", "content": "Tell me a story"}], n=2, seed=11)
    request |= dict(temperature=1.0, max_completion_tokens=16)
    plain = alpha.chat.completions.create(**request)
    texts = [c.message.content for c in plain.choices]
    assert texts[0] != texts[1]  # two samples, not one copied
    assert plain.usage.completion_tokens <= 2 * 16
    streamed, finishes = ["", ""], [None, None]
    for chunk in alpha.chat.completions.create(**request, stream=True):
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
            finishes[choice.index] = choice.finish_reason or finishes[choice.index]
    assert streamed == texts  # the same seed, the same two samples, streamed per choice
    assert finishes == [c.finish_reason for c in plain.choices]


def test_the_event_loop_answers_while_a_long_completion_generates(alpha, server):
    """Generation runs off the event loop: other requests are answered while tokens still stream."""
    arrivals: list[float] = []
    first_delta = threading.Event()

    def read_stream() -> None:
        # Greedy on "hello there" makes the tiny model repeat newlines until the length limit.
        stream = alpha.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "hello there"}],
            temperature=0,
            max_tokens=450,
            stream=True,
        )
        for chunk in stream:
            arrivals.append(time.monotonic())
            if chunk.choices and chunk.choices[0].delta.content:
                first_delta.set()

    reader = threading.Thread(target=read_stream)
    reader.start()
    assert first_delta.wait(120)
    models = alpha.models.list()
    health = httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=30)
    answered = time.monotonic()
    reader.join(120)
    assert "tiny" in [m.id for m in models] and health.status_code == 200
    later = [t for t in arrivals if t > answered]
    assert len(later) > 10  # the completion was still streaming when both answers came back


def test_chat_errors_are_openai_shaped(alpha):
    with pytest.raises(openai.NotFoundError) as missing:
        alpha.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["code"] == "model_not_found"
    long_prompt = "the quick brown fox " * 400  # the tiny model has a 512-token context
    with pytest.raises(openai.BadRequestError) as too_long:
        alpha.chat.completions.create(model="tiny", messages=[{"role": "user", "content": long_prompt}])
    assert too_long.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError, match="temperature"):
        alpha.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], temperature=3)


# -- local mode --------------------------------------------------------------------------------


def test_without_keys_the_server_stays_on_loopback(make_server, chat_data, tmp_path):
    refused = subprocess.run(
        [sys.executable, "-m", "tunery", "serve", "--host", "0.0.0.0", "--home", str(tmp_path)],
        env=server_env(None),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "refusing to listen on 0.0.0.0 without API keys" in refused.stderr
    local = make_server(workers=0, keys=None)
    assert "no API keys configured: listening on loopback only" in local.log.read_text()
    client = local.client("any-key-at-all")
    uploaded = client.files.create(file=chat_data[0].open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny", training_file=uploaded.id)
    assert job.organization_id == "local"
    client.fine_tuning.jobs.cancel(job.id)
