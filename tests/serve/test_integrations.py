"""OpenAI's `integrations` through the real openai client: a job with W&B (offline without a key),
MLflow and TensorBoard (tunery extensions in the same list) trains, shows the integrations back, and
leaves each tracker's run where the server put it; bad integrations are a clear 400."""

from __future__ import annotations

import json

import openai
import pytest
from serving import wait_for_status

from tunery.jobs.layout import Home

INTEGRATIONS = [
    {"type": "wandb", "wandb": {"project": "tickets", "name": "first", "tags": ["tiny"]}},
    {"type": "mlflow", "mlflow": {"experiment": "tickets"}},
    {"type": "tensorboard"},
]


@pytest.fixture(scope="module")
def server(make_server):
    return make_server(workers=1)


@pytest.fixture(scope="module")
def client(server):
    return server.client()


@pytest.fixture(scope="module")
def job(client, chat_data):
    training = client.files.create(file=chat_data[0].open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=training.id,
        integrations=INTEGRATIONS,
        method={"type": "supervised", "supervised": {"tunery": {"max_steps": 3, "lora": {"r": 4}}}},
    )
    return wait_for_status(client, job.id, {"succeeded", "failed", "cancelled"})


def test_the_job_shows_its_integrations_back(client, job):
    assert job.status == "succeeded"
    fetched = client.fine_tuning.jobs.retrieve(job.id)
    assert fetched.integrations[0].type == "wandb"
    assert (fetched.integrations[0].wandb.project, fetched.integrations[0].wandb.name) == ("tickets", "first")
    raw = client.fine_tuning.jobs.with_raw_response.retrieve(job.id).http_response.json()
    assert raw["integrations"] == INTEGRATIONS


def test_each_tracker_holds_the_job_s_run(server, job):
    from mlflow import MlflowClient

    home = Home.at(server.home)
    run_dir = home.run_dir(job.id)
    links = {link["type"]: link for link in json.loads((run_dir / "trackers.json").read_text())}
    assert links["wandb"]["mode"] == "offline" and list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    mlflow = MlflowClient(f"sqlite:///{server.home / 'mlflow.db'}")
    found = mlflow.get_run(links["mlflow"]["run_id"])
    assert found.info.run_name == "first" and found.data.params["lora.r"] == "4"
    assert [m.step for m in mlflow.get_metric_history(found.info.run_id, "train_loss")] == [1, 2, 3]
    config = (home.job_config(job.id)).read_text()
    assert f"tunery/{job.id}" in config  # W&B tags as OpenAI's: the job id among them


def test_the_dashboard_job_details_name_the_tracker_runs(server, job):
    import httpx

    details = httpx.get(
        f"{server.base_url}/tunery/jobs/{job.id}/details", headers={"Authorization": "Bearer sk-alpha"}, timeout=60
    ).json()
    assert "cancel" in details["actions"]["running"]  # the job page's buttons read these
    trackers = {t["type"]: t for t in details["trackers"]}
    assert set(trackers) == {"wandb", "mlflow", "tensorboard"}
    assert "offline" in trackers["wandb"]["what"] and trackers["wandb"]["url"] is None  # no key: no online run
    assert "MLflow run" in trackers["mlflow"]["what"] and str(server.home) not in json.dumps(details["trackers"])


def test_the_job_page_shows_the_trackers_in_a_browser(server, job):
    from playwright.sync_api import expect, sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        context = browser.new_context(base_url=server.base_url.removesuffix("/v1"))
        context.add_init_script("localStorage.setItem('tunery.apiKey', 'sk-alpha')")
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        page.goto(f"/jobs/{job.id}")
        trackers = page.locator("#trackers")
        expect(trackers).to_contain_text("MLflow run", timeout=60_000)
        expect(trackers).to_contain_text("offline")
        expect(trackers).to_contain_text("TensorBoard event files")
        browser.close()
    assert not errors, errors


@pytest.mark.parametrize(
    ("integrations", "message"),
    [
        ([{"type": "comet"}], "comet.*wandb.*mlflow.*tensorboard"),
        ([{"type": "wandb", "wandb": {}}], "project"),
        ([{"type": "tensorboard"}, {"type": "tensorboard"}], "name a type twice"),
        (
            [{"type": "wandb", "wandb": {"project": "a"}}, {"type": "mlflow", "mlflow": {"experiment": "b"}}],
            "same name",
        ),
    ],
)
def test_bad_integrations_are_a_400_naming_them(client, chat_data, integrations, message):
    training = client.files.create(file=chat_data[0].open("rb"), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match=message):
        client.fine_tuning.jobs.create(model="tiny", training_file=training.id, integrations=integrations)


def test_trackers_are_set_through_integrations_only(client, chat_data):
    """A tracker's paths are the server's to choose: the tunery block cannot name them."""
    training = client.files.create(file=chat_data[0].open("rb"), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="tracking"):
        client.fine_tuning.jobs.create(
            model="tiny",
            training_file=training.id,
            method={"type": "supervised", "supervised": {"tunery": {"tracking": {"mlflow_uri": "sqlite:////etc/x"}}}},
        )
