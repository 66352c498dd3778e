"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright).

As a person would use it: enter a key, upload a file and read its report, start a job and watch
its curve grow, cancel it, chat with a fine-tuned model while the answer streams in, read the
comparison, and follow every link. Each page leaves a screenshot in test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx
from browsing import screenshot
from playwright.sync_api import expect

from tunery.data.formats import to_example
from tunery.data.render import ChatTokenizer, render_chat
from tunery.data.validate import first_valid_examples

# The order is the story: later tests use what earlier ones made (the uploaded file, the job).
STATE: dict = {}


def test_a_key_is_asked_for_and_each_organisation_sees_its_own_jobs(open_page, dashboard):
    page = open_page(key=None)
    page.goto("/")
    expect(page.get_by_role("alert")).to_contain_text("An API key is needed")
    screenshot(page, "00-key-needed")
    page.get_by_label("API key").fill("sk-beta")
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#keybar .who")).to_have_text("org-beta")
    expect(page.locator(".state.empty")).to_contain_text("No fine-tuning jobs yet")  # alpha's job is not listed
    page.get_by_role("button", name="change key").click()
    page.get_by_label("API key").fill("sk-alpha")
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#keybar .who")).to_have_text("org-alpha")
    expect(page.locator("#jobs-table")).to_contain_text(dashboard.short_job_id)


def test_upload_with_progress_then_read_the_report(open_page, dashboard, tmp_path):
    page = open_page()
    page.goto("/files")
    expect(page.locator(".state.empty, #files-table").first).to_be_visible()
    page.set_input_files("#upload-form input[type=file]", str(dashboard.valid))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-message")).to_contain_text("uploaded as")
    expect(page.locator("#upload-progress")).to_have_attribute("value", "100")
    file_id = page.locator("#upload-message a").inner_text()
    expect(page.locator("#files-table")).to_contain_text(file_id)
    STATE["valid_file"] = file_id

    lines = dashboard.train.read_text().splitlines()[:20]
    lines[5] = '{"messages": [{"role": "usr", "content": "hi"}, {"role": "assistant", "content": "x"}]}'
    lines[8] = lines[8][:-1]
    bad = tmp_path / "broken.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    page.set_input_files("#upload-form input[type=file]", str(bad))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-message")).to_contain_text("validation failed")
    screenshot(page, "10-files")

    page.locator("#upload-message a").click()
    expect(page.locator("#report-verdict")).to_contain_text("2 error(s)")
    expect(page.locator("[data-code=unrecognized_role]")).to_contain_text("line 6")
    page.locator("[data-code=invalid_json] a", has_text="line 9").click()
    expect(page.locator("#target-line")).to_contain_text(lines[8][-30:])
    screenshot(page, "11-file-with-errors")


def test_token_view_highlights_exactly_the_trained_tokens(open_page, dashboard, tiny_model_dir):
    page = open_page()
    page.goto(f"/files/{STATE['valid_file']}?model=tiny")
    expect(page.locator("#report-verdict")).to_contain_text("No errors")
    examples = page.locator(".token-example")
    expect(examples).to_have_count(3)
    tok = ChatTokenizer.from_dir(tiny_model_dir)
    for i, (line, obj) in enumerate(first_valid_examples(dashboard.valid, 3)):
        mask = render_chat(to_example(obj, line), tok, 512).loss_mask
        highlighted = examples.nth(i).locator(".tok.trained")
        assert highlighted.count() == sum(mask) > 0
        assert examples.nth(i).locator(".tok").count() == len(mask)
    assert int(page.locator("#histogram").get_attribute("data-points")) > 0
    screenshot(page, "12-file-report")


def _plotted(page) -> int:
    return int(page.locator("#charts svg").first.get_attribute("data-points") or 0)


def test_start_a_job_and_watch_its_curve_grow_then_cancel_it(open_page, dashboard):
    page = open_page()
    page.goto("/")
    page.get_by_role("button", name="New job").click()
    form = page.locator("#new-job")
    form.locator("select[name=model]").select_option("tiny")
    train = page.locator("select[name=training_file] option", has_text=STATE["valid_file"]).get_attribute("value")
    form.locator("select[name=training_file]").select_option(train)
    form.locator("input[name=batch_size]").fill("2")
    form.locator("textarea[name=tunery]").fill('{"max_steps": 200, "save_every": 5, "eval_every": 4, "lora": {"r": 4}}')
    form.get_by_role("button", name="Start job").click()
    page.wait_for_url(re.compile(r"/jobs/ftjob-"))
    STATE["job"] = page.url.rsplit("/", 1)[1]

    # Polled every 1.5 s: the first points appear, then more, without reloading the page.
    page.wait_for_function("() => +document.querySelector('#charts svg')?.dataset.points > 0", timeout=240_000)
    first = _plotted(page)
    page.wait_for_function(f"() => +document.querySelector('#charts svg').dataset.points > {first}", timeout=120_000)
    assert _plotted(page) > first
    expect(page.locator("#status")).to_have_text("running")
    expect(page.locator("#events")).to_contain_text("Step ")
    expect(page.locator("#config")).to_contain_text("max_steps")
    screenshot(page, "20-job-running")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#cancel-button").click()
    expect(page.locator("#status")).to_have_text("cancelled", timeout=60_000)
    expect(page.locator("#cancel-button")).to_be_disabled()


def test_playground_streams_two_models_side_by_side(open_page, dashboard):
    job, _ = dashboard.evaluated.result(timeout=600)
    page = open_page()
    page.goto(f"/playground?model={job.fine_tuned_model}")
    expect(page.locator("select[name=model-A]")).to_have_value("tiny")
    expect(page.locator("select[name=model-B]")).to_have_value(job.fine_tuned_model)
    page.locator("input[name=max_tokens]").fill("12")
    # Count how often each answer's text changes while it streams in.
    page.evaluate("""() => {
        window.updates = {A: 0, B: 0};
        for (const name of ["A", "B"]) {
            new MutationObserver(() => window.updates[name]++).observe(
                document.querySelector(`[data-pane=${name}] .transcript`),
                {subtree: true, childList: true, characterData: true});
        }
    }""")
    page.locator("textarea[name=prompt]").fill("My invoice has a problem, please help")
    page.get_by_role("button", name="Send").click()
    for name in ("A", "B"):
        answer = page.locator(f"[data-pane={name}] .msg.assistant")
        expect(answer.locator(".meta")).to_contain_text("tokens", timeout=120_000)
        assert answer.locator(".text").inner_text().strip()
        assert "error" not in (answer.get_attribute("class") or "")
    updates = page.evaluate("window.updates")
    # More changes than the user bubble, an empty answer and a final one: the text grew piece by piece.
    assert updates["A"] > 4 and updates["B"] > 4, updates
    screenshot(page, "30-playground")


def test_evaluation_shows_the_comparison_and_filters_to_failures(open_page, dashboard):
    import json

    job, report_path = dashboard.evaluated.result(timeout=600)
    report = json.loads(report_path.read_text())
    page = open_page()
    page.goto("/eval")
    expect(page.locator("#verdict")).to_have_text(report["verdict"])
    expect(page.locator("#compare-table tbody tr")).to_have_count(3)
    expect(page.locator("#forgetting")).to_contain_text("not run")
    expect(page.locator("#example-count")).to_have_text("6 of 6 examples")
    rows = [
        json.loads(line) for line in report_path.with_name("compare-report.examples.jsonl").read_text().splitlines()
    ]
    failures = sum(1 for r in rows if r["system"] == "tuned" and r["scores"][report["primary"]] < 1)
    assert 0 < failures < 6  # two items accept any answer, four only their label
    page.get_by_label(re.compile("only failures")).check()
    expect(page.locator("#example-count")).to_have_text(f"{failures} of 6 examples")
    expect(page.locator("#examples tbody tr.failure")).to_have_count(failures)
    # Search narrows further: the second item accepts any answer, so it is no failure.
    page.get_by_placeholder("search prompts and answers").fill("(#3-1)")
    expect(page.locator("#example-count")).to_have_text("0 of 6 examples")
    page.get_by_label(re.compile("only failures")).uncheck()
    expect(page.locator("#example-count")).to_have_text("1 of 6 examples")
    screenshot(page, "40-evaluation")


def test_monitoring_page_says_how_to_turn_it_on(open_page):
    page = open_page()
    page.goto("/monitoring")
    expect(page.locator("main")).to_contain_text("tunery monitor")
    screenshot(page, "50-monitoring")


def test_no_dead_links_on_any_page(open_page, dashboard):
    job, _ = dashboard.evaluated.result(timeout=600)
    page = open_page()
    pages = [
        "/",
        "/files",
        f"/files/{STATE['valid_file']}?model=tiny",
        f"/jobs/{STATE['job']}",
        f"/jobs/{job.id}",
        "/eval",
        "/playground",
        "/monitoring",
    ]
    links: set[str] = set()
    for path in pages:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        expect(page.locator(".state.loading")).to_have_count(0)
        expect(page.locator(".state.error")).to_have_count(0)
        links.update(page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"))
        if path == f"/jobs/{job.id}":
            screenshot(page, "21-job-succeeded")
    assert len(links) > 15
    headers = {"Authorization": "Bearer sk-alpha"}
    for link in sorted(links):
        assert link.startswith(dashboard.url), f"a link leaves the server: {link}"
        response = httpx.get(urljoin(dashboard.url, link), headers=headers, timeout=60)
        assert response.status_code == 200, f"{link} → {response.status_code}"
    # Detail pages are HTML for any id; the ids they link to must also exist for this organisation.
    for link in sorted(links):
        for kind, api in (("/jobs/", "/v1/fine_tuning/jobs/"), ("/files/", "/v1/files/")):
            path = link.removeprefix(dashboard.url).split("?")[0].split("#")[0]
            if path.startswith(kind):
                assert httpx.get(dashboard.url + api + path[len(kind) :], headers=headers).status_code == 200, link
