"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright).

As a person would use it: enter a key, upload a file (its progress bar seen part-way on a slow
uplink) and read its report, open the token view, start a job and watch its training and
validation curves grow, pause, resume and cancel it, chat with a fine-tuned model while the
answer streams in, read the comparison, and crawl every link from the home page. Each page
leaves a screenshot in test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urljoin, urlparse

import httpx
from browsing import screenshot, sideways_overflow
from builders import write_chat_dataset
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

    # A slow uplink (Chromium's own throttling) makes the progress bar visible part-way.
    big = write_chat_dataset(tmp_path / "big.jsonl", 600, seed=9)  # about 110 KB
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 40_000},
    )
    page.set_input_files("#upload-form input[type=file]", str(big))
    page.get_by_role("button", name="Upload").click()
    page.wait_for_function(
        "() => { const bar = document.querySelector('#upload-progress');"
        " return !bar.hidden && +bar.value > 0 && +bar.value < 100; }"
    )
    expect(page.locator("#upload-status")).to_contain_text(" of ")
    screenshot(page, "10-upload-progress")
    expect(page.locator("#upload-message")).to_contain_text("big.jsonl uploaded as", timeout=60_000)
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )

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
    expect(page.locator("#token-cut")).to_contain_text("Whole examples, up to tiny's context of 512 tokens")
    tok = ChatTokenizer.from_dir(tiny_model_dir)
    for i, (line, obj) in enumerate(first_valid_examples(dashboard.valid, 3)):
        mask = render_chat(to_example(obj, line), tok, 512).loss_mask
        highlighted = examples.nth(i).locator(".tok.trained")
        assert highlighted.count() == sum(mask) > 0
        assert examples.nth(i).locator(".tok").count() == len(mask)
    assert int(page.locator("#histogram").get_attribute("data-points")) > 0
    screenshot(page, "12-file-report")


def _plotted(page, series: str = "train") -> int:
    """How many points of a series the Loss chart (the first) shows."""
    values = page.locator(f'#charts svg >> nth=0 >> path[data-series="{series}"]')
    return len(json.loads(values.get_attribute("data-values"))) if values.count() else 0


def _wait_for_more(page, series: str, than: int, timeout: int) -> None:
    page.wait_for_function(
        """([series, than]) => {
            const path = document.querySelector(`#charts svg path[data-series="${series}"]`);
            return path && JSON.parse(path.dataset.values).length > than;
        }""",
        arg=[series, than],
        timeout=timeout,
    )


def test_start_a_job_watch_both_curves_grow_pause_resume_and_cancel_it(open_page, dashboard):
    page = open_page()
    page.goto("/")
    page.get_by_role("button", name="New job").click()
    form = page.locator("#new-job")
    form.locator("select[name=model]").select_option("tiny")
    option = "select[name={}] option"
    train = page.locator(option.format("training_file"), has_text="train.jsonl").first.get_attribute("value")
    valid = page.locator(option.format("validation_file"), has_text=STATE["valid_file"]).get_attribute("value")
    form.locator("select[name=training_file]").select_option(train)
    form.locator("select[name=validation_file]").select_option(valid)
    # Long enough never to finish by itself (the test pauses, resumes and cancels it): a job that
    # succeeded before the pause landed would also add its own final eval to the Evaluation page.
    form.locator("input[name=n_epochs]").fill("1000")
    form.locator("input[name=batch_size]").fill("2")
    form.locator("textarea[name=tunery]").fill(
        '{"max_steps": 100000, "save_every": 3, "eval_every": 2, "lora": {"r": 4}}'
    )
    form.get_by_role("button", name="Start job").click()
    page.wait_for_url(re.compile(r"/jobs/ftjob-"))
    STATE["job"] = page.url.rsplit("/", 1)[1]

    # Polled every 1.5 s: the first points appear, then more, without reloading the page, for the
    # training curve and for the validation curve (measured every eval_every steps).
    _wait_for_more(page, "train", 0, timeout=240_000)
    _wait_for_more(page, "validation", 0, timeout=120_000)
    first_train, first_valid = _plotted(page, "train"), _plotted(page, "validation")
    _wait_for_more(page, "train", first_train, timeout=120_000)
    _wait_for_more(page, "validation", first_valid, timeout=120_000)
    expect(page.locator("#status")).to_have_text("running")
    expect(page.locator("#events")).to_contain_text("Step ")
    expect(page.locator("#config")).to_contain_text("max_steps")
    expect(page.locator("#config")).to_contain_text(valid)  # the validation file the trainer used
    for chart in ("Token accuracy", "Learning rate", "Throughput"):
        expect(page.locator("#charts")).to_contain_text(chart)
    screenshot(page, "20-job-running")

    # The list shows it too: running, with a progress bar and an ETA.
    jobs = open_page()
    jobs.goto("/")
    row = jobs.locator("#jobs-table tr", has_text=STATE["job"])
    expect(row).to_contain_text("running")
    expect(row).to_contain_text("ETA")
    assert int(row.get_by_role("progressbar").get_attribute("aria-valuemax")) > 0
    screenshot(jobs, "05-jobs-list")

    # Pause: the trainer checkpoints and stops; resume continues from that checkpoint.
    page.locator("#pause-button").click()
    expect(page.locator("#status")).to_have_text("paused", timeout=120_000)
    expect(page.locator("#resume-button")).to_be_enabled()
    expect(page.locator("#pause-button")).to_be_disabled()
    expect(page.locator("#checkpoints")).to_contain_text(":ckpt-step-")  # pausing saved one, servable
    screenshot(page, "22-job-paused")
    at_pause = _plotted(page, "train")
    page.locator("#resume-button").click()
    expect(page.locator("#status")).to_have_text(re.compile("queued|running"))
    _wait_for_more(page, "train", at_pause, timeout=240_000)
    expect(page.locator("#status")).to_have_text("running")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#cancel-button").click()
    expect(page.locator("#status")).to_have_text("cancelled", timeout=60_000)
    expect(page.locator("#cancel-button")).to_be_disabled()
    expect(page.locator("#resume-button")).to_be_disabled()


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
    expect(page.locator("#forgetting")).to_have_text(report["forgetting"]["verdict"])
    skills = set(report["forgetting"]["by_skill"]) | set(report["distribution"]["by_skill"])
    expect(page.locator("#forgetting-table tbody tr")).to_have_count(len(skills) + 1)  # and the total
    expect(page.locator("#distribution")).to_have_text(report["distribution"]["verdict"])
    expect(page.locator("#probe-answers summary")).to_contain_text("Forgetting probe answers (240)")
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

    # The trainer's own final eval on the validation file is listed too, with its score.
    page.locator("#reports a", has_text="final-eval").click()
    expect(page.locator("#compare-table")).to_contain_text("(95% CI)")
    expect(page.locator("#example-count")).to_have_text("12 of 12 examples")
    # Each answer links to its line of the uploaded validation file.
    expect(page.locator("#examples a").first).to_have_attribute("href", f"/files/{job.validation_file}#line-1")
    screenshot(page, "41-evaluation-final-eval")


def test_monitoring_page_says_how_to_turn_it_on(open_page):
    page = open_page()
    page.goto("/monitoring")
    expect(page.locator("main")).to_contain_text("tunery monitor")
    screenshot(page, "50-monitoring")


def _is_page(path: str) -> bool:
    """A dashboard page (rendered by the browser) rather than an asset, the API or its docs."""
    pages = ("/", "/files", "/eval", "/playground", "/monitoring", "/api")
    return path in pages or path.startswith(("/jobs/", "/files/"))


def test_no_dead_links_crawling_every_page_from_the_home_page(open_page, dashboard):
    """Follow every link, stylesheet, script and image from / outwards: each page opens without an
    error state, and everything else it refers to answers 200. In a 1,280 px window no page
    scrolls sideways and no card is wider than itself (the playground's two panes included)."""
    dashboard.evaluated.result(timeout=600)
    page = open_page(width=1280)
    queue, seen, other = ["/"], {"/"}, set()
    overflow: dict[str, list[str]] = {}
    visited = 0
    while queue:
        target = queue.pop(0)
        visited += 1
        assert visited <= 100, f"the crawl did not end: {sorted(seen)}"
        page.goto(target)
        page.wait_for_load_state("networkidle")
        expect(page.locator(".state.loading")).to_have_count(0)
        expect(page.locator(".state.error")).to_have_count(0)  # a detail page whose id is not ours shows one
        if target == f"/jobs/{dashboard.short_job_id}":
            expect(page.locator('#charts path[data-series="validation"]').first).to_be_attached()
            screenshot(page, "21-job-succeeded")
        if target == "/api":  # the offline API reference lists the public API
            expect(page.locator(".api-table").first).to_be_visible()
            expect(page.locator("main")).to_contain_text("/v1/fine_tuning/jobs/{job_id}/pause")
            # Request and response bodies, field by field, from the schema (no Swagger UI from a CDN).
            create = page.locator(".api-table tr", has_text="POST").filter(
                has=page.locator("code", has_text=re.compile(r"^/v1/fine_tuning/jobs$"))
            )
            create.locator("summary").click()
            expect(create.locator(".schema").first).to_contain_text("training_file: string required")
            expect(create.locator(".bodies")).to_contain_text("response: FineTuningJob")
            assert page.locator('a[href="/docs"]').count() == 0
            screenshot(page, "70-api-reference")
        parsed = urlparse(target)
        if parsed.path == "/playground" and (model := parse_qs(parsed.query).get("model")):
            expect(page.locator("select[name=model-B], select[name=model-A]").first).to_be_attached()
            assert page.locator(f'[data-pane] option[value="{model[0]}"]').count() > 0, target
        if parsed.path == "/playground":
            page.get_by_label("side by side").check()
            expect(page.locator("[data-pane=B]")).to_be_visible()
        if found := sideways_overflow(page):
            overflow[target] = found
        refs = page.eval_on_selector_all(
            "a[href], link[href], script[src], img[src]", "nodes => nodes.map(n => n.href || n.src)"
        )
        for ref in refs:
            url = urlparse(urljoin(dashboard.url + target, ref))
            assert f"{url.scheme}://{url.netloc}" == dashboard.url, f"{target} links out of the server: {ref}"
            local = url.path + (f"?{url.query}" if url.query else "")  # a #fragment is the same page
            if _is_page(url.path):
                if local not in seen:
                    seen.add(local)
                    queue.append(local)
            else:
                other.add(local)
    assert not overflow, f"too wide at 1,280 px: {overflow}"
    assert {"/files", "/eval", "/playground", "/monitoring", "/api"} <= seen
    assert any(p.startswith("/jobs/") for p in seen) and any(p.startswith("/files/") for p in seen)
    assert any(p.startswith("/playground?model=ft") for p in seen)  # ft:..., URL-encoded
    headers = {"Authorization": "Bearer sk-alpha"}
    for local in sorted(other):
        response = httpx.get(dashboard.url + local, headers=headers, timeout=60)
        assert response.status_code == 200, f"{local} → {response.status_code}"
    assert any(p.startswith("/ui/") for p in other) and "/openapi.json" in other
