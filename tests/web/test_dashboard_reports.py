"""What the dashboard reads about a finished job: metrics, config, progress, eval report, monitoring.

They wait for the session's short job and its `tunery compare` report. This file sorts after the
browser tests on purpose: by the time it runs, that background work is done instead of awaited.
"""

from __future__ import annotations

import csv
import io
import json
import time
from urllib.parse import quote

import pytest
from browsing import api_get as get
from browsing import screenshot
from builders import run_cli


def test_metrics_page_by_offset(dashboard):
    job, _ = dashboard.evaluated.result(timeout=600)
    everything = get(dashboard, f"/v1/tunery/jobs/{job.id}/metrics").json()
    train = [r for r in everything["records"] if r["type"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4] and not everything["reset"]
    rest = get(dashboard, f"/v1/tunery/jobs/{job.id}/metrics", offset=2).json()
    assert rest["records"] == everything["records"][2:] and rest["offset"] == everything["offset"]
    assert get(dashboard, f"/v1/tunery/jobs/{job.id}/metrics", offset=10_000).json()["reset"]
    details = get(dashboard, f"/v1/tunery/jobs/{job.id}/details").json()
    assert details["run_config"]["max_steps"] == 4 and details["run_config"]["data"] == job.training_file
    assert "output" not in details["run_config"]
    assert get(dashboard, "/v1/tunery/jobs/progress").json()["data"][job.id] == {
        "step": 4,
        "total_steps": 4,
        "epoch": train[-1]["epoch"],
    }


def test_eval_reports_are_found_beside_the_job_and_names_are_not_paths(dashboard):
    job, _ = dashboard.evaluated.result(timeout=600)
    # The compare report beside the job, and the trainer's final eval on the validation file, which
    # `tunery train` registers with the run.
    summary, final = get(dashboard, "/v1/tunery/evals").json()["data"]  # newest first
    assert summary["job_id"] == job.id and summary["kind"] == "compare" and summary["n"] == 6
    assert summary["headline"] == summary["verdict"]
    assert final["job_id"] == job.id and final["kind"] == "eval" and final["name"].startswith("final-eval-")
    assert final["n"] == 12
    assert final["headline"].startswith(final["primary"] + " ") and final["headline"].endswith(", tuned")
    final_view = get(dashboard, f"/v1/tunery/evals/{job.id}/{final['name']}").json()
    assert len(final_view["examples"]) == 12
    view = get(dashboard, f"/v1/tunery/evals/{job.id}/compare-report").json()
    assert set(view["report"]["systems"]) == {"zero_shot", "few_shot", "tuned"}
    probe = [row for row in view["examples"] if row["system"] == "forgetting_probe"]
    assert len(view["examples"]) == 3 * 6 + len(probe) and len(probe) == view["report"]["forgetting"]["n"] == 240
    assert get(dashboard, f"/v1/tunery/evals/{job.id}/..%2Fconfig").status_code == 404


def test_monitoring_shows_a_models_eval_history_with_its_alerts(dashboard, open_page):
    pytest.importorskip("tunery.lineage.hooks", reason="this tree's trainer does not register runs")
    from playwright.sync_api import expect

    from tunery.store.registry import FILENAME, Registry, SuiteRecord

    job, _ = dashboard.evaluated.result(timeout=600)
    registry = Registry(dashboard.tunery_home / FILENAME)
    run = registry.find_run_at(dashboard.server.home / "jobs" / job.id / "run")
    assert run is not None, "a finished job's run is registered by its trainer"
    # A suite and three results, written as `tunery monitor add` and `monitor run` write them.
    now = time.time()
    registry.add_suite(
        SuiteRecord(
            id="suite-web",
            run_id=run.id,
            eval_path="/data/heldout.jsonl",
            every_s=86400,
            threshold=0.1,
            graders=None,
            webhook=None,
            created_at=now,
            next_due=now,
            baseline=None,
        )
    )
    drop = "exact fell from 0.800 to 0.500, more than 0.1 below its baseline"
    for hours, exact, level, message in (
        (48, 0.8, "ok", "baseline recorded"),
        (24, 0.75, "ok", "all metrics within 0.1"),
        (0, 0.5, "error", drop),
    ):
        registry.add_result(
            "suite-web",
            started_at=now - hours * 3600,
            dataset_id=None,
            metrics={"exact": exact},
            level=level,
            message=message,
            report_path=None,
            baseline={"exact": 0.8},
            events=[("error", drop, None)] if level == "error" else [],
        )
    registry.close()

    view = get(dashboard, "/v1/tunery/monitoring").json()
    [model] = view["models"]
    assert view["available"] and model["model"] == job.fine_tuned_model
    [series] = model["evals"]
    assert [p["value"] for p in series["points"]] == [0.8, 0.75, 0.5]
    assert [p["alert"] for p in series["points"]] == [False, False, True]
    assert series["threshold"] == pytest.approx(0.7) and model["alerts"][0]["message"] == drop
    assert model["alerts"][0]["at"] == int(now) and model["alerts"][0]["source"] == "suite-web"
    assert get(dashboard, "/v1/tunery/monitoring", key="sk-beta").json()["models"] == []

    page = open_page()
    page.goto("/monitoring")
    expect(page.locator("#alerts")).to_contain_text(drop)
    expect(page.locator(".alert-list li")).to_have_count(1)
    assert page.locator(".chart svg").first.get_attribute("data-points") == "6"  # 3 results, 1 alert, 2 threshold
    screenshot(page, "51-monitoring-alert")


OFF_TOPIC = [
    "What is the capital of France and how did it become the seat of government over the centuries?",
    "Explain photosynthesis step by step, with the chemical equation and the role of chlorophyll.",
    "Write a sonnet about the sea at night, in the style of an old English poet.",
    "How many moons does Jupiter have, and which of them could hold liquid water under the ice?",
    "Translate 'good morning, how did you sleep' into Spanish, German and Japanese.",
    "Summarise the causes of the First World War in three paragraphs for a school essay.",
]


def test_monitoring_shows_drift_day_by_day_from_the_prompt_log(dashboard, open_page):
    """Three days of logged prompts to the fine-tuned model: two like its training prompts, then a
    day of general questions. The page shows each day's score and the last day as an alert."""
    from playwright.sync_api import expect

    from tunery.monitor.drift import prompt_text
    from tunery.monitor.prompt_log import log_prompt
    from tunery.web.api.monitoring import _training_prompts
    from tunery.web.drift_history import DAY, daily_drift

    job, _ = dashboard.evaluated.result(timeout=600)
    model = job.fine_tuned_model
    now = time.time()
    like_training = [json.loads(line)["messages"] for line in dashboard.valid.read_text().splitlines()]
    logged = [(now - 2.5 * DAY, m) for m in like_training[:6]] + [(now - 1.5 * DAY, m) for m in like_training[6:]]
    logged += [(now - 600, [{"role": "user", "content": text}]) for text in OFF_TOPIC]
    for ts, messages in logged:
        log_prompt(dashboard.tunery_home, model, messages, now=ts)
    other = "ft:tiny:org-beta:x:y"  # another organisation's model: never on org-alpha's page
    log_prompt(dashboard.tunery_home, other, [{"role": "user", "content": "hello"}], now=now - 60)

    view = get(dashboard, "/v1/tunery/monitoring/drift").json()
    [found] = view["models"]
    assert found["model"] == model
    [series] = found["drift"]
    assert [p["note"].split(",")[0] for p in series["points"]] == ["6 prompts", "6 prompts", "6 prompts"]
    scores = [p["value"] for p in series["points"]]
    assert [p["alert"] for p in series["points"]] == [False, False, True], scores
    assert series["threshold"] == 1.0 and len(found["alerts"]) == 1
    # The same scores measure_drift gives each day on its own (the endpoint embeds training once).
    train = _training_prompts(str(dashboard.train))
    texts = [(ts, prompt_text(messages)) for ts, messages in logged]
    assert [d.score for d in daily_drift(train, texts, now=now, days=3)] == pytest.approx(scores, abs=0.02)
    assert get(dashboard, "/v1/tunery/monitoring/drift", key="sk-beta").json()["models"] == []

    page = open_page()
    page.goto("/monitoring")
    expect(page.locator("#drift .drift-days tbody tr")).to_have_count(3)
    expect(page.locator("#drift .drift-days tr.failure")).to_have_count(1)
    expect(page.locator("#alerts")).to_contain_text("2 alert(s)")
    screenshot(page, "52-monitoring-drift")


def _browser_series(page, chart: int, series: str) -> list[tuple[int, float]]:
    values = page.locator(f'#charts svg >> nth={chart} >> path[data-series="{series}"]').get_attribute("data-values")
    return [(int(x), y) for x, y in json.loads(values)]


def test_the_browsers_curves_are_the_results_csv_and_what_tunery_plot_draws(dashboard, open_page, tmp_path):
    """One source: the job's metrics.jsonl. The points the page plots equal the results CSV the
    API serves, value for value, and the series `tunery plot` draws from the same file."""
    from playwright.sync_api import expect

    from tunery.train.rundir import RunDir

    job, _ = dashboard.evaluated.result(timeout=600)
    page = open_page()
    page.goto(f"/jobs/{job.id}")
    expect(page.locator('#charts path[data-series="validation"]').first).to_be_attached()
    shown = {
        "train_loss": _browser_series(page, 0, "train"),
        "valid_loss": _browser_series(page, 0, "validation"),
        "train_accuracy": _browser_series(page, 1, "train"),
        "valid_mean_token_accuracy": _browser_series(page, 1, "validation"),
    }

    content = dashboard.server.client("sk-alpha").files.content(job.result_files[0]).text
    rows = list(csv.DictReader(io.StringIO(content)))
    from_csv = {
        column: [(int(r["step"]), float(r[column])) for r in rows if r[column]]
        for column in ("train_loss", "valid_loss", "train_accuracy", "valid_mean_token_accuracy")
    }
    assert shown == from_csv
    assert [step for step, _ in shown["train_loss"]] == [1, 2, 3, 4]
    assert [step for step, _ in shown["valid_loss"]] == [2, 4]  # eval_every 2

    # `tunery plot` reads the run's metrics.jsonl: its train and validation records are these points.
    run = dashboard.server.home / "jobs" / job.id / "run"
    records = RunDir(run).read_metrics()
    train = [r for r in records if r["type"] == "train"]
    valid = [r for r in records if r["type"] == "valid"]
    assert shown["train_loss"] == [(r["step"], r["train_loss"]) for r in train]
    assert shown["valid_loss"] == [(r["step"], r["valid_loss"]) for r in valid]
    assert shown["train_accuracy"] == [(r["step"], r["train_mean_token_accuracy"]) for r in train]
    done = run_cli("plot", run, "--output", tmp_path / "loss.png")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "loss.png").stat().st_size > 0


def test_the_job_page_shows_task_score_against_forgetting_per_checkpoint(dashboard, open_page):
    """Before `tunery compare --checkpoints` the job page says how to get it; after, it shows the
    CLI's table cell for cell and its PNG byte for byte, with each step a link to its checkpoint
    model. No server path reaches the browser, and another organisation gets nothing."""
    import base64

    from playwright.sync_api import expect

    job, _ = dashboard.evaluated.result(timeout=600)
    page = open_page()
    page.goto(f"/jobs/{job.id}")
    expect(page.locator("#tradeoff-how")).to_have_text(
        f"Task score against forgetting for each: tunery compare --checkpoints HOME/jobs/{job.id}/run --data HELD_OUT.jsonl"
    )
    expect(page.locator("#tradeoff")).to_have_count(0)
    assert get(dashboard, f"/v1/tunery/jobs/{job.id}/checkpoints.png").status_code == 404

    run = dashboard.server.home / "jobs" / job.id / "run"
    # The answers to the general prompts were cached by the session's compare: forward passes only.
    done = run_cli(
        "compare", "--checkpoints", run, "--data", dashboard.valid, env={"TUNERY_HOME": str(dashboard.tunery_home)}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((run / "checkpoints.json").read_text())
    rows = report["checkpoints"]
    assert len(rows) >= 2

    details = get(dashboard, f"/v1/tunery/jobs/{job.id}/details").json()
    assert str(dashboard.server.home) not in json.dumps(details["checkpoint_tradeoff"])
    assert details["checkpoint_tradeoff"]["data"] == "valid.jsonl" and details["checkpoint_tradeoff"]["plot"]
    assert get(dashboard, f"/v1/tunery/jobs/{job.id}/checkpoints.png", key="sk-beta").status_code == 404

    page.reload()
    table = page.locator("#tradeoff")
    expect(table.locator("tbody tr")).to_have_count(len(rows))
    metric = rows[0]["metric"]
    header = ["checkpoint", "held-out loss", *([metric] if metric else []), "KL from base (95% CI)", "extra NLL"]
    assert table.locator("thead th").all_inner_texts() == header
    models = {
        c.step_number: c.fine_tuned_model_checkpoint
        for c in dashboard.server.client().fine_tuning.jobs.checkpoints.list(job.id)
    }
    for row, r in zip(table.locator("tbody tr").all(), rows, strict=True):
        kl = r["kl"]
        cells = [
            f"step {r['step']}",
            f"{r['loss']:.4f}",
            *([f"{r['score']:.3f}"] if metric else []),
            f"{kl['mean']:.4f} ({kl['low']:.4f}..{kl['high']:.4f})",
            f"{r['extra_nll']['mean']:+.4f}",
        ]
        assert row.locator("td").all_inner_texts() == cells
        # The same cells the CLI printed (rich may wrap a long cell, so its parts are looked for).
        for cell in cells:
            assert all(part in done.stdout for part in cell.split(" ")), (cell, done.stdout)
        if r["step"] in models:
            link = row.locator("td a").first
            expect(link).to_have_attribute("href", f"/playground?model={quote(models[r['step']], safe='')}")
    image = page.locator("#tradeoff-plot img")
    expect(image).to_be_visible()
    assert page.evaluate("() => document.querySelector('#tradeoff-plot img').naturalWidth") > 0
    source = image.get_attribute("src")
    assert source.startswith("data:image/png;base64,")
    assert base64.b64decode(source.split(",", 1)[1]) == (run / "checkpoints.png").read_bytes()
    screenshot(page, "22-job-checkpoint-tradeoff")
