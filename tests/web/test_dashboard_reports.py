"""What the dashboard reads about a finished job: metrics, config, progress, eval report, monitoring.

They wait for the session's short job and its `tunery compare` report. This file sorts after the
browser tests on purpose: by the time it runs, that background work is done instead of awaited.
"""

from __future__ import annotations

import time

import pytest
from browsing import api_get as get
from browsing import screenshot


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
    [summary] = get(dashboard, "/v1/tunery/evals").json()["data"]
    assert summary["job_id"] == job.id and summary["kind"] == "compare" and summary["n"] == 6
    view = get(dashboard, f"/v1/tunery/evals/{job.id}/compare-report").json()
    assert set(view["report"]["systems"]) == {"zero_shot", "few_shot", "tuned"}
    assert len(view["examples"]) == 3 * 6
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
    assert series["threshold"] == pytest.approx(0.7) and drop in model["alerts"][0]
    assert get(dashboard, "/v1/tunery/monitoring", key="sk-beta").json()["models"] == []

    page = open_page()
    page.goto("/monitoring")
    expect(page.locator("#alerts")).to_contain_text(drop)
    expect(page.locator(".alert-list li")).to_have_count(1)
    assert page.locator(".chart svg").first.get_attribute("data-points") == "6"  # 3 results, 1 alert, 2 threshold
    screenshot(page, "51-monitoring-alert")
