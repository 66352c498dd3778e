"""The model card: a README.md in each final model directory, written from the registry.

It says what the model is (base and its weights hash, method, data, hyper-parameters), how good it
is (final metrics, the latest `tunery compare` verdict and forgetting probe, other evaluations),
what it is for, and how to use and reproduce it. It replaces the template peft leaves in
`final/README.md`, and is rewritten whenever a new report is registered for the run. The YAML
front matter is the Hugging Face Hub's, so the directory can be uploaded as it is.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

from tunery.data.formats import FORMATS
from tunery.fsio import atomic_write
from tunery.store.registry import Registry, RunRecord
from tunery.train.methods import METHODS

HYPERPARAMETERS = (
    "n_epochs",
    "batch_size",
    "learning_rate",
    "lr_scheduler",
    "warmup_ratio",
    "weight_decay",
    "max_grad_norm",
    "max_seq_len",
    "packing",
    "seed",
    "precision",
    "device",
)
METRICS = (
    "step",
    "trained_tokens",
    "loss_tokens",
    "train_loss",
    "train_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)
SAMPLE_LINES = 500  # enough to find the task's system prompt without reading a large file


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _data_statistics(blob: str, quote: int) -> tuple[list[tuple], str | None, list[tuple[str, str]]]:
    """Statistics of the first lines of a dataset, and what the card may quote of it.

    A card is meant to be shared, and training data can hold people's details; so it shows
    counts and lengths, and quotes the system prompt and `quote` examples only when the run's
    `card_examples` setting asks for them.

    Returns:
        (statistics rows, the most common system prompt or None, up to `quote` (input, answer) pairs)
    """
    systems: Counter[str] = Counter()
    examples = messages = with_system = 0
    chars: dict[str, list[int]] = {"user": [], "assistant": []}
    quoted: list[tuple[str, str]] = []
    path = Path(blob)
    if not path.is_file():
        return [], None, []
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= SAMPLE_LINES:
                break
            obj = json.loads(line)
            turns = obj.get("messages") or (obj.get("input") or {}).get("messages") or []
            answer = obj.get("preferred_output") or []
            turns = [m for m in [*turns, *answer] if isinstance(m, dict) and isinstance(m.get("content"), str)]
            examples += 1
            messages += len(turns)
            with_system += any(m.get("role") == "system" for m in turns)
            for m in turns:
                if m.get("role") == "system":
                    systems[m["content"]] += 1
                elif m.get("role") in chars:
                    chars[m["role"]].append(len(m["content"]))
            user = next((m["content"] for m in turns if m.get("role") == "user"), None)
            reply = next((m["content"] for m in reversed(turns) if m.get("role") == "assistant"), None)
            if len(quoted) < quote and user is not None and reply is not None:
                quoted.append((user[:300], reply[:300]))
    mean = lambda values: f"{sum(values) / len(values):.0f}" if values else "–"  # noqa: E731
    sampled = f" (first {examples})" if examples == SAMPLE_LINES else ""
    rows = [
        (f"messages per example{sampled}", f"{messages / max(examples, 1):.1f}"),
        ("examples with a system prompt", f"{with_system / max(examples, 1):.0%} ({len(systems)} distinct)"),
        ("characters per user message (mean)", mean(chars["user"])),
        ("characters per assistant reply (mean)", mean(chars["assistant"])),
    ]
    system = systems.most_common(1)[0][0] if systems and quote else None
    return rows, system, quoted


def _adapter_words(run: RunRecord) -> str:
    if run.adapter == "lora":
        lora = run.config.get("lora") or {}
        return f"LoRA (r={lora.get('r')}, alpha={lora.get('alpha')}, dropout={lora.get('dropout')})"
    return "full fine-tuning"


def _learned_from(run: RunRecord) -> str:
    method = METHODS.get(run.method)
    return FORMATS[method.data_format].noun if method else "examples"


def render_card(registry: Registry, run: RunRecord) -> str:
    """The card's markdown."""
    name = Path(run.path).name
    method = METHODS[run.method].title if run.method in METHODS else run.method
    lines = [
        "---",
        f"base_model: {run.base_model}",
        f"library_name: {'peft' if run.adapter == 'lora' else 'transformers'}",
        "pipeline_tag: text-generation",
        "tags:",
        *(f"- {tag}" for tag in ("tunery", run.method, run.adapter)),
        "---",
        "",
        f"# {name}",
        "",
        f"{run.base_model} adapted by {method} with {_adapter_words(run)}, trained with tunery "
        f"{run.versions.get('tunery')}. Registry id `{run.id}`"
        + (f", trained {run.created_at}." if run.created_at else "."),
        "",
        "## Base model",
        "",
        *_table(
            ("field", "value"), [("reference", run.base_model), ("weights sha256", run.base_model_sha256 or "unknown")]
        ),
        "",
        "## Training data",
        "",
    ]
    rows, stats, system, quoted = [], [], None, []
    quote = int(run.config.get("card_examples") or 0)
    for link in run.datasets:
        if link.dataset_id is None:
            rows.append((link.role, "unknown (file changed after training)", "", "", link.path))
            continue
        data = registry.get_dataset(link.dataset_id)
        check = "ok" if data.ok else f"{data.errors} error{'s' * (data.errors != 1)}"
        check += f", {data.warnings} warning{'s' * (data.warnings != 1)}" if data.warnings else ""
        rows.append((link.role, f"`{data.id[:12]}`", data.examples, check, Path(link.path).name))
        if link.role == "train":
            stats, system, quoted = _data_statistics(data.blob, quote)
    lines += _table(("role", "dataset", "examples", "validation", "file"), rows)
    if stats:
        lines += ["", *_table(("training data", "value"), stats)]
    if system:
        lines += ["", "The system prompt of the training data:", "", *_quote(system)]
    for n, (user, reply) in enumerate(quoted, 1):
        lines += ["", f"Training example {n}:", "", *_quote(f"user: {user}\nassistant: {reply}")]
    if not quote:
        lines += [
            "",
            "No training text is quoted here: set `card_examples: N` in the run config to quote the "
            "system prompt and N examples.",
        ]

    config = run.config
    params = [(key, config[key]) for key in HYPERPARAMETERS if key in config]
    if run.adapter == "lora":
        params += [(f"lora.{k}", v) for k, v in (config.get("lora") or {}).items()]
    section = METHODS[run.method].config_section if run.method in METHODS else None
    if section:
        params += [(f"{section}.{k}", v) for k, v in (config.get(section) or {}).items()]
    lines += ["", "## Hyper-parameters", "", *_table(("setting", "value"), params)]

    metrics = [(key, run.metrics[key]) for key in METRICS if key in run.metrics]
    lines += ["", "## Metrics", "", "At the end of training:", "", *_table(("metric", "value"), metrics)]
    lines += _selection_section(Path(run.path))
    lines += _evaluation_sections(registry, run)
    lines += _intended_use(run, system)
    lines += [
        "",
        "## How to use",
        "",
        "```bash",
        f"tunery eval --adapter {run.path} --data heldout.jsonl",
        f"tunery reproduce {run.id}        # re-train from the recorded lineage and check the metrics",
        "```",
        "",
        f"Versions: {', '.join(f'{k} {v}' for k, v in run.versions.items() if v)}.",
        "",
        f"_Card generated by tunery on {datetime.now().isoformat(timespec='seconds')}._",
        "",
    ]
    return "\n".join(lines)


def _selection_section(run_dir: Path) -> list[str]:
    """Which checkpoint is final/ and why, when the run chose it (select=best)."""
    manifest = run_dir / "final" / "tunery.json"
    selection = json.loads(manifest.read_text()).get("selection") if manifest.is_file() else None
    if not selection:
        return []
    rows = [
        (s["step"], f"{s['loss']:.4f}", "-" if s.get("score") is None else f"{s['score']:.3f}")
        for s in selection["scores"]
    ]
    metric = selection["criterion"] if selection["criterion"] != "loss" else "graded"
    return [
        "",
        "## Checkpoint selection",
        "",
        f"final/ is the checkpoint at {selection['reason']}, scored on the validation set:",
        "",
        *_table(("step", "validation loss", metric), rows),
    ]


def _evaluation_sections(registry: Registry, run: RunRecord) -> list[str]:
    compares = registry.reports(run.id, "compare")
    lines = ["", "## Compared with prompting the base model", ""]
    if not compares:
        lines.append(
            f"Not compared yet. Run `tunery compare --tuned {run.path} --train TRAIN.jsonl --data HELDOUT.jsonl` "
            "to see whether fine-tuning beat zero-shot and few-shot prompting; this card will show the verdict."
        )
        forgetting = distribution = None
    else:
        summary = compares[-1].summary
        primary = summary.get("primary")
        lines += [f"**Verdict:** {summary.get('verdict')}", ""]
        rows = []
        for system, report in (summary.get("systems") or {}).items():
            score = (report.get("metrics") or {}).get(primary) or {}
            rows.append(
                (
                    system,
                    f"{score.get('mean', float('nan')):.3f} ({score.get('low', 0):.2f}..{score.get('high', 0):.2f})",
                    f"{report.get('prompt_tokens_per_request', 0):.0f}",
                )
            )
        lines += _table(("system", f"{primary} (95% CI)", "prompt tokens"), rows)
        lines += ["", f"On {summary.get('data')} ({compares[-1].path})."]
        forgetting = summary.get("forgetting")
        distribution = summary.get("distribution")
    lines += ["", "## Forgetting probe", ""]
    if forgetting:
        lines += [f"{forgetting.get('verdict')}", ""]
        lines += _table(
            ("skill", "base", "tuned"),
            [
                (skill, values.get("base"), values.get("tuned"))
                for skill, values in (forgetting.get("by_skill") or {}).items()
            ],
        )
    else:
        lines.append("Not run (it runs with `tunery compare`, unless --no-forgetting).")
    if forgetting and distribution:
        lines += ["", "## Distance from the base model", "", distribution["verdict"], ""]
        lines += _table(
            ("skill", "KL nats/token", "extra NLL nats/token"),
            [
                (skill, f"{values['kl']:.4f}", f"{values['extra_nll']:+.4f}")
                for skill, values in distribution["by_skill"].items()
            ],
        )
    evals = registry.reports(run.id, "eval")
    if evals:
        lines += ["", "## Evaluations", ""]
        rows = []
        for report in evals[-5:]:
            summary = report.summary
            scores = ", ".join(f"{k} {v['mean']:.3f}" for k, v in (summary.get("metrics") or {}).items())
            loss = (summary.get("loss") or {}).get("loss")
            rows.append((summary.get("data"), summary.get("n"), scores, "-" if loss is None else f"{loss:.3f}"))
        lines += _table(("data", "examples", "scores", "loss"), rows)
    return lines


def _quote(text: str) -> list[str]:
    """A fenced text block: a prompt keeps its line breaks, and markdown in it stays literal."""
    fence = "~~~~" if "~~~" in text else "~~~"
    return [f"{fence}text", *text.splitlines(), fence]


def _intended_use(run: RunRecord, system: str | None) -> list[str]:
    task = "the task set by the system prompt above" if system else "the task its training data shows"
    return [
        "",
        "## Intended use",
        "",
        f"Inputs like those in the training data, for {task}. The model learned from "
        f"{_learned_from(run)} only; on other inputs it falls back "
        "on the base model's behaviour and shares its limitations and biases. Check it on held-out data from "
        "your own traffic before use, and watch for input drift once deployed (`tunery monitor drift`).",
    ]


def write_card(registry: Registry, run: RunRecord) -> Path | None:
    """Write RUN_DIR/final/README.md; None when the final directory is gone."""
    final = Path(run.path) / "final"
    if not final.is_dir():
        return None
    path = final / "README.md"
    atomic_write(path, render_card(registry, run))
    return path
