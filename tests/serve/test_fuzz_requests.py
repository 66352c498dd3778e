"""Random JSON at every request type of the API, through a real `tunery serve` (hypothesis).

The promise under test: whatever a client sends, the answer is a success or a clear 4xx in
OpenAI's error shape (`{"error": {"message", "type", ...}}`), never a 500 or a traceback.
Bodies are drawn near each request type's own fields, so the fuzzer gets past the first check.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunery.serve.types.chat import ChatCompletionRequest
from tunery.serve.types.fine_tuning import DpoHyperparameters, JobCreateRequest

HEADERS = {"Authorization": "Bearer sk-alpha"}
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["auto", "tiny", "none", "user", "assistant", "text", "json_schema", "function", "/etc"])
)


def json_near(keys: list[str]) -> st.SearchStrategy:
    """JSON values whose objects mostly use `keys`."""
    return st.recursive(
        SCALARS,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.sampled_from(keys) | st.text(max_size=3), children, max_size=4)
        ),
        max_leaves=10,
    )


CHAT_KEYS = [*ChatCompletionRequest.model_fields, "role", "content", "type", "text", "json_schema", "function", "name"]
CHAT_VALUE = json_near(CHAT_KEYS)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "developer"]) | CHAT_VALUE},
    optional={"content": st.text(max_size=30) | CHAT_VALUE, "name": CHAT_VALUE, "tool_calls": CHAT_VALUE},
)
CHAT = st.fixed_dictionaries(
    {"model": st.sampled_from(["tiny", "nope"]) | CHAT_VALUE, "messages": st.lists(MESSAGE, max_size=3) | CHAT_VALUE},
    optional={key: CHAT_VALUE for key in ChatCompletionRequest.model_fields if key not in ("model", "messages")},
)
JOB_KEYS = [*JobCreateRequest.model_fields, *DpoHyperparameters.model_fields, "type", "supervised", "dpo", "tunery"]
JOB_VALUE = json_near(JOB_KEYS + ["lora", "r", "max_steps", "reference", "grader", "data"])
HYPERPARAMETERS = st.dictionaries(st.sampled_from(list(DpoHyperparameters.model_fields)), JOB_VALUE, max_size=3)
METHOD_BLOCK = st.fixed_dictionaries({}, optional={"hyperparameters": HYPERPARAMETERS | JOB_VALUE, "tunery": JOB_VALUE})
METHOD = st.fixed_dictionaries(
    {"type": st.sampled_from(["supervised", "dpo", "reinforcement"]) | JOB_VALUE},
    optional={"supervised": METHOD_BLOCK, "dpo": METHOD_BLOCK, "reinforcement": JOB_VALUE},
)
JOB = st.fixed_dictionaries(
    {"model": st.sampled_from(["tiny", "nope"]) | JOB_VALUE, "training_file": st.just("TRAINING") | JOB_VALUE},
    optional={
        "method": METHOD | JOB_VALUE,
        "seed": JOB_VALUE,
        "suffix": JOB_VALUE,
        "metadata": JOB_VALUE,
        "hyperparameters": HYPERPARAMETERS,
        "validation_file": JOB_VALUE,
        "integrations": JOB_VALUE,
    },
)


@pytest.fixture(scope="module")
def server(make_server):
    return make_server(workers=0)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def training_file(server, chat_data) -> str:
    return server.client().files.create(file=chat_data[0].open("rb"), purpose="fine-tune").id


def assert_clean(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"] and error["type"], response.text
        assert "Traceback" not in response.text


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(body=CHAT)
def test_random_chat_requests_get_an_answer_or_a_clear_4xx(http, body):
    if isinstance(body, dict):
        body.setdefault("max_tokens", 2)  # a valid request generates: keep it short
        if isinstance(body.get("n"), int) and not isinstance(body["n"], bool):
            body["n"] = min(body["n"], 2)
    assert_clean(http.post("/chat/completions", content=json.dumps(body)))


@FUZZ
@given(body=JOB)
def test_random_job_requests_get_a_job_or_a_clear_4xx(http, training_file, body):
    if body.get("training_file") == "TRAINING":
        body["training_file"] = training_file
    response = http.post("/fine_tuning/jobs", content=json.dumps(body))
    assert_clean(response)
    if response.status_code == 200:
        http.post(f"/fine_tuning/jobs/{response.json()['id']}/cancel")


@FUZZ
@given(
    path=st.sampled_from(["/files", "/fine_tuning/jobs", "/models", "/tunery/jobs/progress"]),
    params=st.dictionaries(
        st.sampled_from(["limit", "after", "order", "purpose", "metadata", "metadata[k]"]),
        st.text(max_size=8) | st.integers(min_value=-(2**70), max_value=2**70).map(str),
        max_size=3,
    ),
)
def test_random_list_queries_get_a_page_or_a_clear_4xx(http, path, params):
    assert_clean(http.get(path, params=params))


@FUZZ
@given(
    purpose=st.sampled_from(["fine-tune", "batch", "user_data"]) | st.text(max_size=6),
    content=st.binary(max_size=200) | json_near(JOB_KEYS).map(lambda v: (json.dumps(v) + "\n").encode()),
    filename=st.text(max_size=12),
)
def test_random_uploads_get_a_file_or_a_clear_4xx(http, purpose, content, filename):
    response = http.post("/files", data={"purpose": purpose}, files={"file": (filename or "f", content)})
    assert_clean(response)
    if response.status_code == 200:
        http.delete(f"/files/{response.json()['id']}")
