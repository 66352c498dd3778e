"""Empty, loading and error states of every page, in the real browser.

An organisation with nothing yet (org-beta: the session's jobs and files are org-alpha's), a key
the server refuses, ids that do not exist or belong to another organisation, a request the server
rejects, and a slow network: each page says what is going on and what to do, never a blank page.
"""

from __future__ import annotations

import pytest
from browsing import screenshot
from playwright.sync_api import expect

LIST_PAGES = ["/", "/files", "/eval", "/playground", "/monitoring"]
EMPTY = {
    "/": "No fine-tuning jobs yet",
    "/files": "No files yet",
    "/eval": "No evaluation reports yet",
    "/monitoring": "No scheduled evaluation yet",
}


def _name(path: str) -> str:
    return path.strip("/").replace("/", "-") or "jobs"


def test_an_organisation_without_data_gets_an_empty_state_on_every_page(open_page):
    page = open_page(key="sk-beta")
    for path in LIST_PAGES:
        page.goto(path)
        expect(page.locator("#keybar .who")).to_have_text("org-beta")
        if path == "/monitoring":  # two sections, each with its own empty state
            expect(page.locator("#evals .state.empty")).to_contain_text(EMPTY[path])
            expect(page.locator("#drift .state.empty")).to_contain_text("No drift to show")
            expect(page.locator("#drift")).to_contain_text("TUNERY_LOG_PROMPTS=1")
        elif path in EMPTY:
            expect(page.locator(".state.empty")).to_contain_text(EMPTY[path])
        else:  # the playground offers the base models, which every organisation may use
            expect(page.locator("[data-pane=A] .placeholder")).to_have_text("Send a message to start.")
            expect(page.locator("select[name=model-A]")).to_have_value("tiny")
            expect(page.locator("select[name=model-A] option", has_text="ft:")).to_have_count(0)  # alpha's
        expect(page.locator(".state.error, .state.loading")).to_have_count(0)
        screenshot(page, f"60-empty-{_name(path)}")


@pytest.mark.parametrize("path", [*LIST_PAGES, "/jobs/ftjob-x", "/files/file-x"])
def test_a_refused_key_is_named_on_every_page(open_page, path):
    page = open_page(key="sk-wrong")
    page.goto(path)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("This API key was not accepted")
    expect(alert).to_contain_text("sk-wro")
    expect(page.locator("#keybar .who")).to_have_text("key not accepted")
    expect(page.get_by_label("API key")).to_be_focused()  # the key box opens for a new key
    if path == "/":
        screenshot(page, "61-key-refused")


def test_missing_and_foreign_ids_read_as_not_found(open_page, dashboard):
    page = open_page()
    page.goto("/jobs/ftjob-doesnotexist")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Not found")
    expect(alert).to_contain_text("No such fine-tuning job: ftjob-doesnotexist")
    expect(alert.get_by_role("link", name="Back to the jobs")).to_have_attribute("href", "/")
    screenshot(page, "62-job-not-found")
    # org-alpha's job, opened with org-beta's key, is as absent as a job that never existed.
    other = open_page(key="sk-beta")
    other.goto(f"/jobs/{dashboard.short_job_id}")
    expect(other.get_by_role("alert")).to_contain_text(f"No such fine-tuning job: {dashboard.short_job_id}")
    other.goto("/files/file-doesnotexist")
    expect(other.get_by_role("alert")).to_contain_text("No such file")
    expect(other.get_by_role("alert").get_by_role("link")).to_have_attribute("href", "/files")


def test_a_request_the_server_rejects_shows_its_message_and_a_retry(open_page, dashboard):
    alpha = dashboard.server.client("sk-alpha")
    uploaded = alpha.files.create(file=dashboard.valid.open("rb"), purpose="fine-tune")
    page = open_page()
    page.goto(f"/files/{uploaded.id}?model=no-such-model")  # the tokenizer picker's value, hand-edited
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The server refused this request")
    expect(alert).to_contain_text("model must be one of the base models ['tiny'], got 'no-such-model'")
    expect(alert.get_by_role("button", name="Try again")).to_be_visible()
    screenshot(page, "63-server-error")


def test_pages_show_a_loading_state_while_the_server_is_slow(open_page):
    page = open_page()
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 1500, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    page.goto("/", wait_until="commit")
    expect(page.locator(".state.loading")).to_contain_text("Loading jobs…")
    screenshot(page, "64-loading")
    expect(page.locator("#jobs-table")).to_be_visible(timeout=60_000)
