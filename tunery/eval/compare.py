"""Was fine-tuning worth it? The base model prompted zero-shot and few-shot, against the tuned model.

All three systems answer the same held-out items and are graded by the same graders. The tuned
model is set against the better of the two prompting baselines on the metric that answers the
question (the one named with `metric`, else the strictest that separates the systems: see
`tunery.eval.verdict`), with a paired bootstrap interval on the difference, and the verdict says it
plainly:

    fine-tuning beats few-shot prompting by 0.62 (CI 0.50..0.73) on exact
    prompting is enough here: the difference is within noise (+0.03 on exact, CI -0.05..0.12)

It also sets prompt tokens per request side by side (a tuned model needs no worked examples in
its prompt) and, unless turned off, runs the forgetting probe on base and tuned.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from tunery.data.formats import load_examples
from tunery.errors import TuneryError
from tunery.eval.evaluate import DEFAULT_BATCH_SIZE, Log, ProgressFn, evaluate_items, reference_budget, resolve_device
from tunery.eval.fewshot import pick_shots, with_shots
from tunery.eval.forgetting import DistributionShift, ForgettingReport, distribution_shift, run_probe
from tunery.eval.heldout import load_heldout
from tunery.eval.report import EvalReport, Score, format_score, write_json_and_examples
from tunery.eval.response_format import load_response_format
from tunery.eval.target import attach_tuned, base_model_dir, find_tuned
from tunery.eval.verdict import BASELINE_WORDS, decide
from tunery.graders import auto_grader_names, is_object_spec, resolve_graders

FORMATTED = "+format"  # suffix of a system constrained to --response-format


class CompareReport(BaseModel):
    base: str
    tuned: str
    train: str
    data: str
    shots: int
    seed: int
    primary: str = Field(description="the metric the verdict is about (see tunery.eval.verdict)")
    primary_reason: str = Field(description="why that metric decided")
    baseline: str = Field(description="the prompting system the tuned model is set against")
    difference: Score = Field(description="tuned minus baseline on the primary metric, paired bootstrap")
    differences: dict[str, Score] = Field(description="tuned minus the same baseline on every metric")
    verdict: str
    response_format: str | None = Field(
        None, description="the format file the compared systems were constrained to (None: unconstrained)"
    )
    disagreement: str | None = Field(description="set when the metrics point different ways, naming each")
    prompt_tokens: dict[str, float] = Field(description="mean prompt tokens per request, per system")
    token_note: str
    systems: dict[str, EvalReport]
    forgetting: ForgettingReport | None
    distribution: DistributionShift | None = Field(
        None, description="KL and extra NLL of the tuned model on the base's own answers to general prompts"
    )
    seconds: float

    def to_dict(self, examples: bool = False) -> dict:
        data = self.model_dump(mode="json", exclude={"systems", "forgetting"})
        data["systems"] = {name: report.to_dict(examples) for name, report in self.systems.items()}
        data["forgetting"] = self.forgetting.to_dict(examples) if self.forgetting else None
        return data


def token_note(prompt_tokens: dict[str, float]) -> str:
    """Prompt tokens per request, tuned against the longest prompting baseline.

    >>> token_note({"zero_shot": 150.0, "few_shot": 400.0, "tuned": 150.0})
    'prompt tokens per request: tuned 150, few-shot prompting 400 (62% fewer for the tuned model)'
    """
    baseline = max((name for name in BASELINE_WORDS if name in prompt_tokens), key=prompt_tokens.get)
    tuned, other = prompt_tokens["tuned"], prompt_tokens[baseline]
    saving = f" ({(1 - tuned / other) * 100:.0f}% fewer for the tuned model)" if other > tuned else ""
    return f"prompt tokens per request: tuned {tuned:.0f}, {BASELINE_WORDS[baseline]} {other:.0f}{saving}"


def compare(
    base: str | None,
    tuned: str | Path,
    train: str | Path,
    data: str | Path,
    *,
    shots: int = 5,
    seed: int = 0,
    graders: Sequence[str] | None = None,
    metric: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_new_tokens: int | None = None,
    forgetting: bool = True,
    forgetting_per_skill: int | None = None,
    with_loss: bool = True,
    device: str = "auto",
    log: Log | None = None,
    response_format: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> CompareReport:
    """Evaluate zero-shot, few-shot (k = `shots`, from `train`) and the tuned model on `data`.

    Args:
        base: the base model reference; None takes it from the tuned run's manifest.
        tuned: a run directory (final/ is used), an adapter directory or a full model directory.
        train: the training file the shots come from (never from `data`).
        shots: 0 leaves the few-shot system out.
        metric: the grader the verdict is about; None chooses the strictest that separates the
            systems. It is graded even when `graders` (chosen automatically) would leave it out.
        forgetting_per_skill: only the first N items of each skill in both forgetting measures
            (quicker, wider intervals); None measures on all of them.
        response_format: a JSON schema or OpenAI response_format file. Every system then also answers
            constrained to it (as `zero_shot+format`, ...), and the verdict compares those, the way
            the model will be served.

    Raises:
        TuneryError: bad files, unfitting graders, models that cannot be found, too few shots.
    """
    from tunery.inference import Generator

    if shots < 0:
        raise TuneryError(f"shots must be 0 or more, not {shots}")
    started = time.perf_counter()
    items = load_heldout(data, prompts_allowed=any(is_object_spec(name) for name in graders or []))
    references, where = [i.reference for i in items], [i.where for i in items]
    if metric is not None and graders is not None and metric not in graders:
        raise TuneryError(
            f"--metric {metric} is not among the graders asked for ({', '.join(graders)})",
            hint=f"add it to --graders, or leave --graders out to grade {metric} with the automatic choice",
        )
    if metric is not None and graders is None:
        graders = list(dict.fromkeys([*auto_grader_names(references), metric]))
    chosen, skipped = resolve_graders(graders, references, where)
    if metric is not None and metric in skipped:
        raise TuneryError(f"--metric {metric} cannot be graded: {skipped[metric]}")
    shot_list = pick_shots(load_examples(train), items, shots, seed, str(train)) if shots else []
    tuned_model = find_tuned(tuned)
    device = resolve_device(device)
    base_dir = base_model_dir(base, tuned_model)
    base_generator = Generator(base_dir, device=device)
    tuned_generator, tuned_adapter = attach_tuned(base_generator, tuned_model, device=device)
    budget = max_new_tokens or reference_budget(base_generator, items)

    runs = {"zero_shot": (base_generator, None, items)}
    if shots:
        runs["few_shot"] = (base_generator, None, [with_shots(item, shot_list) for item in items])
    runs["tuned"] = (tuned_generator, tuned_adapter, items)
    fmt = load_response_format(response_format) if response_format is not None else None
    formats = {name: None for name in runs}
    if fmt is not None:
        formats |= {name + FORMATTED: fmt for name in runs}
        runs |= {name + FORMATTED: run for name, run in runs.items()}
    systems = {
        name: evaluate_items(
            generator,
            system_items,
            chosen,
            system=name,
            model=str(base or base_dir),
            data=str(data),
            adapter=adapter,
            adapter_label=str(tuned_model.path) if name == "tuned" else None,
            skipped=skipped,
            max_new_tokens=budget,
            batch_size=batch_size,
            # The loss scores the references, not the answers: once per model is enough.
            with_loss=with_loss and formats[name] is None,
            log=log,
            response_format=formats[name],
            progress=progress,
        )
        for name, (generator, adapter, system_items) in runs.items()
    }
    compared = [n for n in systems if n.endswith(FORMATTED)] if fmt else list(systems)

    decision = decide(
        {name.removesuffix(FORMATTED): {g.name: _scores(systems[name], g.name) for g in chosen} for name in compared},
        [g.name for g in chosen],
        metric,
    )
    verdict = decision.verdict + (f", every system constrained to {fmt.path}" if fmt else "")
    prompt_tokens = {name: systems[name].prompt_tokens_per_request for name in runs if not name.endswith(FORMATTED)}
    probe = (
        run_probe(
            (base_generator, None),
            (tuned_generator, tuned_adapter),
            per_skill=forgetting_per_skill,
            log=log,
            progress=progress,
        )
        if forgetting
        else None
    )
    shift = (
        distribution_shift(
            (base_generator, None), (tuned_generator, tuned_adapter), per_skill=forgetting_per_skill, log=log
        )
        if forgetting
        else None
    )
    return CompareReport(
        base=str(base or base_dir),
        tuned=str(tuned_model.path),
        train=str(train),
        data=str(data),
        shots=shots,
        seed=seed,
        primary=decision.metric,
        primary_reason=decision.reason,
        baseline=decision.baseline,
        difference=Score.of(decision.difference),
        differences={m: Score.of(d) for m, d in decision.differences.items()},
        verdict=verdict,
        response_format=fmt.path if fmt else None,
        disagreement=decision.disagreement,
        prompt_tokens=prompt_tokens,
        token_note=token_note(prompt_tokens),
        systems=systems,
        forgetting=probe,
        distribution=shift,
        seconds=round(time.perf_counter() - started, 2),
    )


def _scores(report: EvalReport, metric: str) -> list[float]:
    return [example.scores[metric] for example in report.examples]


def write_compare_report(report: CompareReport, path: str | Path) -> tuple[Path, Path]:
    """The summary JSON at `path`; beside it every answer of every system (and of the probe)."""
    rows = [
        {"system": name, **example.model_dump(mode="json")}
        for name, system in report.systems.items()
        for example in system.examples
    ]
    if report.forgetting:
        rows += [{"system": "forgetting_probe", **row} for row in report.forgetting.examples]
    return write_json_and_examples(report.to_dict(), rows, path)


def print_compare_report(report: CompareReport, console=None) -> None:
    """The systems side by side with intervals, the verdict, the token note, the probe."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    first = next(iter(report.systems.values()))
    metrics = list(first.metrics)
    table = Table(
        "system",
        *[f"{m} (95% CI)" for m in metrics],
        "loss",
        "prompt tokens",
        title=f"{report.data}: {first.n} held-out examples, {report.shots} shots from {report.train}",
        title_justify="left",
    )
    for name, system in report.systems.items():
        loss = f"{system.loss.loss:.3f}" if system.loss else "-"
        table.add_row(
            name, *[format_score(system.metrics[m]) for m in metrics], loss, f"{system.prompt_tokens_per_request:.0f}"
        )
    console.print(table)
    for name, why in first.skipped.items():
        console.print(f"[yellow]{name}[/]: {why}")
    console.print(f"[bold]verdict:[/] {report.verdict}")
    console.print(report.primary_reason)
    if report.disagreement:
        console.print(f"[yellow]{report.disagreement}[/]")
    console.print(report.token_note)
    if report.forgetting:
        probe = report.forgetting
        shift = report.distribution
        columns = ["forgetting probe", "base", "tuned", "drop (95% CI)"]
        if shift:
            columns += ["KL nats/token", "extra NLL"]
        skills = Table(*columns, title_justify="left")
        for skill, values in probe.by_skill.items():
            row = [skill, f"{values['base']:.2f}", f"{values['tuned']:.2f}"]
            row.append(f"{values['base'] - values['tuned']:+.2f} ({values['low']:.2f}..{values['high']:.2f})")
            if shift:
                moved = shift.by_skill.get(skill)
                row += [f"{moved['kl']:.4f}", f"{moved['extra_nll']:+.4f}"] if moved else ["", ""]
            skills.add_row(*row)
        if shift:  # the distribution set's own skills that the probe does not have
            for skill in shift.by_skill.keys() - probe.by_skill.keys():
                moved = shift.by_skill[skill]
                skills.add_row(skill, "", "", "", f"{moved['kl']:.4f}", f"{moved['extra_nll']:+.4f}")
        total = [f"all ({probe.n} items", format_score(probe.base), format_score(probe.tuned)]
        total[0] += f", {shift.n} prompts)" if shift else ")"
        total.append(f"{probe.drop.mean:+.2f} ({probe.drop.low:.2f}..{probe.drop.high:.2f})")
        if shift:
            total += [format_score(shift.kl, digits=4), format_score(shift.extra_nll, digits=4)]
        skills.add_row(*total)
        console.print(skills)
        console.print(f"[bold]forgetting:[/] {probe.verdict}")
        if shift:
            console.print(f"[bold]distribution:[/] {shift.verdict}")
    console.print(f"{report.seconds:.0f}s in all")
