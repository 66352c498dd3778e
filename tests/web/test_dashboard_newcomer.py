"""Where a newcomer stumbled, in a real browser: the New-job form, a failed job's page, a deleted model.

The New-job form picks no file for the user, shows each file's example count and refuses a
validation file that overlaps the training file, inline. A job that fails shows its error once,
in the user's terms, and no empty charts. A deleted model keeps its name in the jobs list (as
OpenAI's job object does) but reads deleted and links nowhere.
"""

from __future__ import annotations

from browsing import screenshot
from builders import write_preference_dataset
from playwright.sync_api import expect
from serving import wait_for_status

# Two steps on the tiny model: a finished (or failed) job in seconds.
SHORT_JOB = {
    "type": "supervised",
    "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}, "tunery": {"max_steps": 2, "lora": {"r": 4}}},
}


def test_the_new_job_form_makes_the_user_choose_and_refuses_overlap_inline(open_page, dashboard, tmp_path):
    alpha = dashboard.server.client("sk-alpha")
    lines = dashboard.train.read_text().splitlines()
    overlapping = tmp_path / "overlap.jsonl"
    overlapping.write_text("\n".join([*dashboard.valid.read_text().splitlines(), lines[2]]) + "\n")
    shared = alpha.files.create(file=overlapping.open("rb"), purpose="fine-tune")
    page = open_page()
    page.goto("/")
    page.get_by_role("button", name="New job").click()
    form = page.locator("#new-job")
    train = form.locator("select[name=training_file]")
    expect(train).to_have_value("")  # nothing chosen for the user, not even the newest upload
    expect(train.locator("option", has_text="overlap.jsonl")).to_contain_text("13 examples")
    expect(train.locator("option", has_text="train.jsonl").first).to_contain_text("48 examples")
    form.get_by_role("button", name="Start job").click()
    expect(form.locator(".form-msg")).to_contain_text("choose the training file")

    train_id = train.locator("option", has_text="train.jsonl").first.get_attribute("value")
    train.select_option(train_id)
    form.locator("select[name=validation_file]").select_option(train_id)
    form.get_by_role("button", name="Start job").click()
    expect(form.locator(".form-msg")).to_contain_text("must not be the training file")

    form.locator("select[name=validation_file]").select_option(shared.id)
    form.get_by_role("button", name="Start job").click()
    # The server's 400, shown where the user is: both file names and the shared line.
    expect(form.locator(".form-msg")).to_contain_text(
        "overlap.jsonl shares 1 example(s) with training_file train.jsonl"
    )
    assert page.url.endswith("/")  # no job was created
    screenshot(page, "06-new-job-overlap")


def test_a_failed_job_shows_its_error_once_in_the_users_terms(open_page, dashboard, tmp_path):
    alpha = dashboard.server.client("sk-alpha")
    train = alpha.files.create(file=dashboard.train.open("rb"), purpose="fine-tune")
    prefs = write_preference_dataset(tmp_path / "prefs.jsonl", 12, seed=4)
    valid = alpha.files.create(file=prefs.open("rb"), purpose="fine-tune")
    job = alpha.fine_tuning.jobs.create(
        model="tiny", training_file=train.id, validation_file=valid.id, method=SHORT_JOB
    )  # supervised training, validated on preference pairs: the trainer refuses the file
    failed = wait_for_status(alpha, job.id, {"succeeded", "failed", "cancelled"}, timeout=300)
    assert failed.status == "failed"
    assert "prefs.jsonl" in failed.error.message and str(dashboard.server.home) not in failed.error.message

    page = open_page()
    page.goto(f"/jobs/{job.id}")
    error = page.locator("#job-error")
    expect(error).to_contain_text("prefs.jsonl")
    text = page.locator("main").inner_text()
    assert text.count(failed.error.message) == 1, text  # once: not again in the events or a log
    assert "/files/file-" not in error.inner_text() and "tunery validate" not in text
    expect(page.locator("#charts")).to_have_count(0)  # nothing was trained, so nothing is plotted
    expect(page.locator("main")).not_to_contain_text("has not started yet")
    screenshot(page, "23-job-failed")


def test_a_deleted_model_reads_deleted_in_the_jobs_list_and_on_its_job(open_page, dashboard):
    alpha = dashboard.server.client("sk-alpha")
    train = alpha.files.create(file=dashboard.train.open("rb"), purpose="fine-tune")
    job = alpha.fine_tuning.jobs.create(model="tiny", training_file=train.id, suffix="gone", method=SHORT_JOB)
    done = wait_for_status(alpha, job.id, {"succeeded", "failed", "cancelled"}, timeout=300)
    assert done.status == "succeeded", done.error
    assert alpha.models.delete(done.fine_tuned_model).deleted

    page = open_page()
    page.goto("/")
    cell = page.locator("#jobs-table tr", has_text=job.id)
    expect(cell).to_contain_text(f"{done.fine_tuned_model} (deleted)")
    expect(cell.locator('a[href^="/playground"]')).to_have_count(0)  # nothing to chat with
    page.goto(f"/jobs/{job.id}")
    expect(page.locator("main")).to_contain_text(f"{done.fine_tuned_model} (deleted)")
    # Its checkpoints are models of their own, as at OpenAI: still listed, still chattable.
    checkpoint = [c.fine_tuned_model_checkpoint for c in alpha.fine_tuning.jobs.checkpoints.list(job.id)]
    assert checkpoint
    expect(page.locator(f'a[href="/playground?model={checkpoint[0].replace(":", "%3A")}"]')).to_have_count(1)
