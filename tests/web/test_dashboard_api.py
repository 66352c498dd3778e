"""The dashboard's pages and its read-only /v1/tunery endpoints, over HTTP on a real server."""

from __future__ import annotations

import pytest
from browsing import api_get as get

from tunery.data.formats import to_example
from tunery.data.render import ChatTokenizer, render_chat
from tunery.data.validate import first_valid_examples
from tunery.web.pages import PAGES


@pytest.fixture(scope="module")
def files(dashboard, tmp_path_factory):
    """(good file id, bad file id) uploaded by org-alpha; the bad one has errors on known lines."""
    alpha = dashboard.server.client("sk-alpha")
    lines = dashboard.valid.read_text().splitlines()
    lines[3] = '{"messages": [{"role": "user", "content": "hi"}]}'  # line 4: no assistant reply
    lines[7] = lines[7][:-1]  # line 8: cut-off JSON
    bad = tmp_path_factory.mktemp("bad") / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    good = alpha.files.create(file=dashboard.valid.open("rb"), purpose="fine-tune")
    broken = alpha.files.create(file=bad.open("rb"), purpose="fine-tune")
    assert good.status == "processed" and broken.status == "error"
    return good.id, broken.id


@pytest.mark.parametrize("path", [p.replace("{job_id}", "ftjob-x").replace("{file_id}", "file-x") for p in PAGES])
def test_every_page_is_html_without_auth_and_forbids_inline_script(dashboard, path):
    response = get(dashboard, path, key=None)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src" not in response.headers["content-security-policy"]  # default-src 'self' covers it
    assert "default-src 'self'" in response.headers["content-security-policy"]
    script = response.text.split('<script type="module" src="')[1].split('"')[0]
    assert get(dashboard, script, key=None).status_code == 200


def test_the_endpoints_need_a_key(dashboard):
    assert get(dashboard, "/v1/tunery/session", key=None).status_code == 401
    assert get(dashboard, "/v1/tunery/session", key="sk-nope").status_code == 401
    assert get(dashboard, "/v1/tunery/session").json()["organization"] == "org-alpha"


def test_full_report_groups_every_issue_with_its_line(dashboard, files):
    _, bad = files
    body = get(dashboard, f"/v1/tunery/files/{bad}/report", model="tiny").json()
    report = body["report"]
    lines = {issue["code"]: issue["line"] for issue in report["issues"]}
    assert lines["example_missing_assistant_message"] == 4 and lines["invalid_json"] == 8
    assert report["file"] == "bad.jsonl" and all(i["file"] == "bad.jsonl" for i in report["issues"])
    assert "invalid_json" in body["fixes"] and body["tokenizer"] == {"model": "tiny", "max_seq_len": 512}
    assert sum(b["count"] for b in body["histogram"]) == body["histogram_examples"] == report["stats"]["examples"]
    line = get(dashboard, f"/v1/tunery/files/{bad}/lines", start=8, count=1).json()["lines"][0]
    assert line["line"] == 8 and not line["text"].endswith("}")


def test_token_view_marks_exactly_the_trainers_mask(dashboard, files, tiny_model_dir):
    good, _ = files
    view = get(dashboard, f"/v1/tunery/files/{good}/tokens", model="tiny", n=3).json()
    tok = ChatTokenizer.from_dir(tiny_model_dir)
    expected = [render_chat(to_example(obj, line), tok, 512) for line, obj in first_valid_examples(dashboard.valid, 3)]
    assert [x["trained"] for x in view["examples"]] == [r.trained_tokens for r in expected]
    for shown, rendered in zip(view["examples"], expected, strict=True):
        assert [trained for _, trained in shown["tokens"]] == [bool(m) for m in rendered.loss_mask]
        assert "".join(text for text, _ in shown["tokens"]) == tok.decode(rendered.input_ids, skip_special_tokens=False)
    assert view["max_seq_len"] == 512  # the model's context: what max_seq_len auto never cuts below
    # As a job with max_seq_len 40 trains: cut there, with the mask render_chat gives at 40.
    cut = get(dashboard, f"/v1/tunery/files/{good}/tokens", model="tiny", n=3, max_seq_len=40).json()
    assert cut["max_seq_len"] == 40
    for shown, (line, obj) in zip(cut["examples"], first_valid_examples(dashboard.valid, 3), strict=True):
        rendered = render_chat(to_example(obj, line), tok, 40)
        assert len(shown["tokens"]) == 40 and shown["truncated"] == rendered.truncated > 0
        assert [trained for _, trained in shown["tokens"]] == [bool(m) for m in rendered.loss_mask]
    too_long = get(dashboard, f"/v1/tunery/files/{good}/tokens", model="tiny", max_seq_len=513)
    assert too_long.status_code == 400 and "context (512)" in too_long.json()["error"]["message"]


def test_another_organisation_sees_none_of_it(dashboard, files):
    good, _ = files
    job = dashboard.short_job_id
    for path in (
        f"/v1/tunery/files/{good}/report",
        f"/v1/tunery/files/{good}/tokens",
        f"/v1/tunery/files/{good}/lines",
        f"/v1/tunery/jobs/{job}/metrics",
        f"/v1/tunery/jobs/{job}/details",
        f"/v1/tunery/evals/{job}/compare-report",
    ):
        assert get(dashboard, path, key="sk-beta").status_code == 404, path
    assert get(dashboard, "/v1/tunery/jobs/progress", key="sk-beta").json() == {"data": {}}
    assert get(dashboard, "/v1/tunery/evals", key="sk-beta").json()["data"] == []


def test_the_dashboard_adds_only_read_only_endpoints_and_calls_only_known_paths(dashboard):
    """Every /v1/tunery endpoint is a GET; every API path the pages' scripts name is in the schema."""
    import re
    from importlib import resources

    schema = get(dashboard, "/openapi.json").json()
    ours = {path: set(item) for path, item in schema["paths"].items() if path.startswith("/v1/tunery/")}
    assert len(ours) >= 10 and all(methods == {"get"} for methods in ours.values()), ours
    # A schema path with its {ids} filled in, against a called path whose ${...} parts match any segment.
    filled = [re.sub(r"\{[^}]+\}", "x", path) for path in schema["paths"]]
    static = resources.files("tunery.web").joinpath("static")
    called = set()
    for script in static.iterdir():
        if script.name.endswith(".js"):
            called.update(re.findall(r"[`\"](/v1/[^`\"?]*)", script.read_text()))
    assert "/v1/chat/completions" in called and "/v1/tunery/monitoring/drift" in called
    pattern = {
        path: re.compile("^" + "[^/]+".join(map(re.escape, re.split(r"\$\{[^}]+\}", path))) + "$") for path in called
    }
    unknown = sorted(path for path, regex in pattern.items() if not any(regex.match(f) for f in filled))
    assert not unknown, f"the pages call paths the API does not have: {unknown}"
