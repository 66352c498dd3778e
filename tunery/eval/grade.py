"""Try a grader before training: sample a model on RFT prompts, grade every answer, summarise.

This is what `tunery grade` prints: the reward distribution, the pass rate, how many prompts
were solved at least once in their samples (what reinforcement learning needs: a group with no
success teaches nothing), a few graded answers, and a warning when the model never succeeded.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tunery.data.rft import load_rft
from tunery.graders.grading import Grading, item_fields, pass_threshold
from tunery.graders.objects import load_grader

PROMPTS_PER_BATCH = 4  # each answered `samples` times in one generation batch
NEVER_SUCCEEDS = (
    "the model never succeeded on these prompts: reinforcement fine-tuning only reinforces answers the "
    "model already gives sometimes, so it cannot learn this task alone. Teach the format first with "
    "supervised fine-tuning, give partial credit in the grader (a multi grader), or start from a larger model."
)


@dataclass
class GradedSample:
    line: int
    prompt: str  # the last user turn
    output: str
    reward: float
    error: str | None = None


@dataclass
class GradeReport:
    grader: str
    model: str
    prompts: int
    samples_per_prompt: int
    temperature: float
    rewards: dict  # mean, std, min, max
    histogram: dict[str, int]  # reward value (rounded) -> count
    pass_threshold: float
    pass_rate: float
    solved_prompts: float  # share of prompts with at least one passing sample
    grader_errors: int
    seconds: float
    warning: str | None = None
    samples: list[GradedSample] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def grade_model(
    grader_path: str | Path,
    data: str | Path,
    *,
    model: str | None = None,
    adapter: str | Path | None = None,
    samples: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 128,
    limit: int | None = None,
    seed: int = 0,
    device: str = "auto",
) -> GradeReport:
    """Sample `samples` answers per prompt from the model (or a tuned run) and grade them all.

    Raises:
        TuneryError: a bad grader or data file, or a model that cannot be found.
    """
    import torch

    from tunery.data.render import render_prompt
    from tunery.eval.evaluate import load_generator
    from tunery.inference import generate_tokens

    started = time.perf_counter()
    grader = load_grader(grader_path)
    examples = load_rft(data, item_fields(grader))[:limit]
    generator, adapter_name, model_dir, _ = load_generator(model, adapter, device=device)
    tok = generator.tokenizer
    torch.manual_seed(seed)
    outputs: list[str] = []
    prompts = [render_prompt(example.prompt(), tok, tools=example.tools) for example in examples]
    with generator.use_adapter(adapter_name):
        for start in range(0, len(prompts), PROMPTS_PER_BATCH):
            rows = generate_tokens(
                generator.model,
                tok,
                prompts[start : start + PROMPTS_PER_BATCH],
                n=samples,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                device=generator.device,
            )
            outputs += [tok.decode([t for t in ids if t not in tok.stop_ids]) for ids in rows]
    items = [example.item for example in examples for _ in range(samples)]
    with Grading(grader) as grading:
        grading.check()
        results = grading.grade_many(outputs, items)
    threshold = pass_threshold(grader)
    rewards = [r.reward for r in results]
    passed = [r >= threshold for r in rewards]
    solved = [any(passed[i * samples : (i + 1) * samples]) for i in range(len(examples))]
    histogram: dict[str, int] = {}
    for value in sorted(rewards):
        key = f"{value:.2f}"
        histogram[key] = histogram.get(key, 0) + 1
    shown = [
        GradedSample(
            line=examples[i // samples].line,
            prompt=str(examples[i // samples].messages[-1].get("content"))[-200:],
            output=outputs[i],
            reward=rewards[i],
            error=results[i].details,
        )
        for i in _spread(len(outputs), passed)
    ]
    return GradeReport(
        grader=str(grader_path),
        model=str(adapter or model or model_dir),
        prompts=len(examples),
        samples_per_prompt=samples,
        temperature=temperature,
        rewards={
            "mean": statistics.fmean(rewards),
            "std": statistics.pstdev(rewards),
            "min": min(rewards),
            "max": max(rewards),
        },
        histogram=histogram,
        pass_threshold=threshold,
        pass_rate=sum(passed) / len(passed),
        solved_prompts=sum(solved) / len(solved),
        grader_errors=sum(not r.ok for r in results),
        seconds=round(time.perf_counter() - started, 2),
        warning=NEVER_SUCCEEDS if not any(passed) else None,
        samples=shown,
    )


def _spread(n: int, passed: list[bool], k: int = 4) -> list[int]:
    """A few sample indices to show: passing ones and failing ones, when there are both."""
    good = [i for i in range(n) if passed[i]][: k // 2]
    bad = [i for i in range(n) if not passed[i]][: k - len(good)]
    return sorted(good + bad)
