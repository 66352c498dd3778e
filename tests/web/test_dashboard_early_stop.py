"""A job that stopped early says so on its page, rather than looking unfinished at step 2 of 12."""

from __future__ import annotations

from playwright.sync_api import expect
from serving import wait_for_status


def test_an_early_stopped_job_says_it_stopped_early(open_page, dashboard):
    alpha = dashboard.server.client("sk-alpha")
    train = alpha.files.create(file=dashboard.train.open("rb"), purpose="fine-tune")
    valid = alpha.files.create(file=dashboard.valid.open("rb"), purpose="fine-tune")
    # No later pass can beat the first by 100 nats, so patience 1 stops the run at its second pass.
    job = alpha.fine_tuning.jobs.create(
        model="tiny", training_file=train.id, validation_file=valid.id,
        method={"type": "supervised", "supervised": {
            "hyperparameters": {"n_epochs": 1, "batch_size": 4},
            "tunery": {"eval_every": 1, "early_stopping": 1, "early_stopping_min_delta": 100,
                       "final_eval": False, "lora": {"r": 4}}}},
    )  # fmt: skip
    assert wait_for_status(alpha, job.id, {"succeeded", "failed"}, timeout=300).status == "succeeded"

    page = open_page()
    page.goto(f"/jobs/{job.id}")
    expect(page.locator("#latest")).to_contain_text("2 / 12")
    expect(page.locator("#latest")).to_contain_text("step (stopped early)")
