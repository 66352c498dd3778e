"""A reinforcement fine-tuning job's page in a real browser: reward curves instead of losses."""

from __future__ import annotations

import json

from browsing import screenshot
from playwright.sync_api import expect
from serving import wait_for_status

GRADER = {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
          "reference": "{{item.target}}", "evaluation_metric": "fuzzy_match"}  # fmt: skip


def test_rft_job_page_shows_reward_curves(open_page, dashboard, tmp_path):
    alpha = dashboard.server.client("sk-alpha")
    rows = [
        {"messages": [{"role": "user", "content": f"hello world {i}"}], "target": "thanks please"} for i in range(8)
    ]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts = alpha.files.create(file=(tmp_path / "p.jsonl").open("rb"), purpose="fine-tune")
    job = alpha.fine_tuning.jobs.create(
        model="tiny", training_file=prompts.id, validation_file=prompts.id,
        method={"type": "reinforcement", "reinforcement": {
            "grader": GRADER, "hyperparameters": {"n_epochs": 1, "batch_size": 2, "eval_interval": 2},
            "tunery": {"rft": {"max_new_tokens": 4, "group_size": 2}, "lora": {"r": 4}}}},
    )  # fmt: skip
    assert wait_for_status(alpha, job.id, {"succeeded", "failed"}, timeout=300).status == "succeeded"

    page = open_page()
    page.goto(f"/jobs/{job.id}")
    charts = page.locator("#charts")
    for title in ("Reward of sampled answers", "Held-out pass rate (greedy)", "Groups with zero reward variance"):
        expect(charts).to_contain_text(title)
    expect(page.locator("#latest")).to_contain_text("mean reward")
    reward = page.locator('#charts svg >> nth=0 >> path[data-series="mean reward"]')
    expect(reward).to_be_attached()
    assert [x for x, _ in json.loads(reward.get_attribute("data-values"))] == [1, 2, 3, 4]  # 8 prompts / 2 per step
    held_out = page.locator('#charts svg >> nth=1 >> path[data-series="pass rate"]')
    assert [x for x, _ in json.loads(held_out.get_attribute("data-values"))] == [0, 2, 4]  # the base first
    screenshot(page, "job-rft")
