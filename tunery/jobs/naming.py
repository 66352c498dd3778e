"""Fine-tuned model names, OpenAI style: `ft:{base}:{org}:{suffix}:{id}[:ckpt-step-N]`."""

from __future__ import annotations

from tunery.store import JobRecord


def fine_tuned_model_name(job: JobRecord) -> str:
    """The model a job produces. The last part is the job id without its `ftjob-` prefix."""
    short = job.id.removeprefix("ftjob-")
    return f"ft:{job.model}:{job.org}:{job.suffix or ''}:{short}"


def checkpoint_model_name(job: JobRecord, step: int) -> str:
    return f"{fine_tuned_model_name(job)}:ckpt-step-{step}"
