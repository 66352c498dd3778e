"""An optional judge: another model, behind any OpenAI-compatible endpoint, marks each answer.

Configured by environment variables, so that no key ever lands in a report or a shell history:

    TUNERY_JUDGE_BASE_URL   e.g. http://localhost:8000/v1 (a `tunery serve`, vLLM, Ollama, OpenAI)
    TUNERY_JUDGE_MODEL      the model name to ask
    TUNERY_JUDGE_API_KEY    optional; falls back to OPENAI_API_KEY, then a placeholder for local servers

Without a base URL and model the grader is skipped with `SKIPPED_MESSAGE`, never silently. The
judge answers CORRECT or INCORRECT (binary verdicts are what small judges get right most often).
"""

from __future__ import annotations

import os
import re

from pydantic import BaseModel, Field

from tunery.errors import TuneryError

SKIPPED_MESSAGE = (
    "judge skipped: no judge endpoint is configured "
    "(set TUNERY_JUDGE_BASE_URL and TUNERY_JUDGE_MODEL to use any OpenAI-compatible server)"
)
INSTRUCTIONS = (
    "You grade answers against a reference answer. Reply with exactly one word: CORRECT if the "
    "answer means the same as the reference and fully answers the conversation, otherwise INCORRECT."
)
_VERDICT = re.compile(r"\b(INCORRECT|CORRECT)\b", re.IGNORECASE)


class JudgeConfig(BaseModel):
    base_url: str = Field(min_length=1, description="OpenAI-compatible endpoint, ending in /v1")
    model: str = Field(min_length=1, description="the judge model's name at that endpoint")
    api_key: str = Field(default="not-needed", description="bearer token; local servers ignore it")
    timeout_s: float = Field(default=60.0, gt=0)


def judge_config_from_env() -> JudgeConfig | None:
    """The configured judge, or None when the base URL or the model is not set."""
    base_url, model = os.environ.get("TUNERY_JUDGE_BASE_URL"), os.environ.get("TUNERY_JUDGE_MODEL")
    if not base_url or not model:
        return None
    key = os.environ.get("TUNERY_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY") or "not-needed"
    return JudgeConfig(base_url=base_url, model=model, api_key=key)


def endpoint_for(model: str) -> JudgeConfig | None:
    """The judge endpoint from the environment, asked for `model` (a model grader names its own)."""
    base_url = os.environ.get("TUNERY_JUDGE_BASE_URL")
    if not base_url:
        return None
    key = os.environ.get("TUNERY_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY") or "not-needed"
    return JudgeConfig(base_url=base_url, model=model, api_key=key)


def ask(config: JudgeConfig, messages: list[dict], **sampling) -> str:
    """One chat completion from the judge endpoint; its text.

    Raises:
        TuneryError: the client is not installed, or the endpoint fails.
    """
    try:
        from openai import OpenAI, OpenAIError
    except ImportError:
        raise TuneryError(
            "model graders need the openai client, which is not installed", hint="pip install 'tunery[eval]'"
        ) from None
    client = OpenAI(base_url=config.base_url, api_key=config.api_key, timeout=config.timeout_s, max_retries=2)
    try:
        response = client.chat.completions.create(model=config.model, messages=messages, **sampling)
    except OpenAIError as exc:
        raise TuneryError(
            f"the judge at {config.base_url} (model {config.model!r}) failed: {type(exc).__name__}: {exc}",
            hint="check TUNERY_JUDGE_BASE_URL and the model name",
        ) from None
    return response.choices[0].message.content or ""


def judge_messages(prompt: list[dict], output: str, reference: str) -> list[dict]:
    """The chat request for one verdict: the conversation, the reference, the answer."""
    conversation = "\n".join(f"{m.get('role')}: {m.get('content') or ''}" for m in prompt)
    return [
        {"role": "system", "content": INSTRUCTIONS},
        {
            "role": "user",
            "content": f"Conversation:\n{conversation}\n\nReference answer:\n{reference}\n\nAnswer to grade:\n{output}",
        },
    ]


def parse_verdict(reply: str) -> float | None:
    """1.0 for CORRECT, 0.0 for INCORRECT (the first verdict word counts), None when neither appears.

    >>> parse_verdict("Correct."), parse_verdict("INCORRECT - wrong label"), parse_verdict("maybe")
    (1.0, 0.0, None)
    """
    found = _VERDICT.search(reply)
    if not found:
        return None
    return 1.0 if found.group(1).upper() == "CORRECT" else 0.0


def judge_scores(
    prompts: list[list[dict]], outputs: list[str], references: list[str], config: JudgeConfig
) -> list[float]:
    """Ask the judge about every answer, one request each, greedy.

    Raises:
        TuneryError: the endpoint fails, or the judge replies with neither verdict word.
    """
    scores = []
    for prompt, output, reference in zip(prompts, outputs, references, strict=True):
        reply = ask(config, judge_messages(prompt, output, reference), temperature=0.0, max_tokens=8)
        verdict = parse_verdict(reply)
        if verdict is None:
            raise TuneryError(
                f"the judge model {config.model!r} replied {reply[:80]!r}, which is neither CORRECT nor INCORRECT",
                hint="use a judge model that follows instructions, or leave `judge` out of --graders",
            )
        scores.append(verdict)
    return scores
