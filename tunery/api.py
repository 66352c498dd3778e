"""The Python API: one function per CLI verb, with typed arguments and results.

`tunery validate` is `tunery.validate`, `tunery train` is `tunery.train`, and so on: each command
in `tunery/commands/` parses its flags, calls the function here and prints what it returns, so the
CLI and Python cannot drift apart. Nothing heavy is imported until a function needs it, so
`import tunery` stays fast and `tunery.validate` never loads torch.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tunery.errors import TuneryError
from tunery.models import DEFAULT_MODEL

if TYPE_CHECKING:
    from tunery.data.validate import ValidationReport
    from tunery.eval.compare import CompareReport
    from tunery.eval.report import EvalReport
    from tunery.export import Exported
    from tunery.run import Run
    from tunery.train.config import RunConfig
    from tunery.train.dry_run import DryRun
    from tunery.train.estimate import Estimate

Log = Callable[[str], None]


def _quiet_library_deprecations() -> None:
    # peft calls a transformers API deprecated in v6 whenever it loads an adapter (training,
    # eval, compare); the warning is theirs, not the user's.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


# progress(what, done, total): `done` of `total` answers generated for `what` (a system, the probe).
ProgressFn = Callable[[str, int, int], None]


def validate(
    path: str | Path,
    *,
    validation: str | Path | None = None,
    model: str | None = None,
    max_seq_len: int | None = None,
    special_tokens: Literal["warn", "refuse", "escape"] = "warn",
) -> ValidationReport:
    """Check a JSONL dataset (chat or preference) and return every problem with its line.

    Args:
        path: the training file.
        validation: a validation file, checked too and for examples shared with `path`.
        model: a model reference; adds token statistics, truncation and end-of-turn checks
            through its tokenizer and chat template (this loads the tokenizer, not the weights).
        max_seq_len: warn about longer examples (with `model`; default its context length).
        special_tokens: what a chat template's special token inside message text
            (`special_tokens_in_content`, a forged turn) is: "warn" a warning, "refuse" an error,
            "escape" a warning that it is tokenised as plain text (training's `special_tokens`).

    Returns:
        The report: `.ok`, `.errors`, `.warnings`, `.stats`, `.to_dict()`.

    Raises:
        TuneryError: a file is missing or unreadable, or the model cannot be found.
    """
    from tunery.data.validate import validate_file

    tokenizer = None
    if model is not None:
        from tunery.data.render import ChatTokenizer
        from tunery.models import describe_model, resolve_model

        model_dir = resolve_model(model)
        tokenizer = ChatTokenizer.from_dir(model_dir, escape_special_tokens=special_tokens == "escape")
        if max_seq_len is None:
            max_seq_len = describe_model(model, model_dir).context_length
    elif max_seq_len is not None:
        raise TuneryError("max_seq_len needs a model (a tokenizer)", hint="pass model='smollm2-135m-instruct'")
    from tunery.train.plan import auto_epochs

    return validate_file(
        path,
        validation=validation,
        tokenizer=tokenizer,
        max_seq_len=max_seq_len,
        special_tokens=special_tokens,
        epochs=auto_epochs,
    )


def estimate(
    path: str | Path,
    *,
    model: str = DEFAULT_MODEL,
    method: str | None = None,
    adapter: Literal["lora", "full"] | None = None,
    epochs: int | Literal["auto"] = "auto",
    max_seq_len: int | Literal["auto"] = "auto",
    gpu_hour_price: float | None = None,
    utilisation: float | None = None,
    lora_rank: int | None = None,
) -> Estimate:
    """Trained tokens, FLOPs, wall-clock time on this CPU and on GPUs, and cost, before training.

    Args:
        method: a name in tunery/train/methods.py, as `train`'s; None picks the method that
            trains on the file's format (sft for chat data, dpo for preference data). "lora" and
            "full", the older spelling, mean method="sft" with that adapter.
        adapter: "lora" (None) or "full", as `train`'s.
        epochs, max_seq_len: "auto" resolves them as training would.
        gpu_hour_price, utilisation, lora_rank: None takes the defaults `tunery estimate` shows.

    Raises:
        pydantic.ValidationError: a setting out of range (the CLI names the flag).
        TuneryError: the data has errors, or the model cannot be found.
    """
    from tunery.train.estimate import EstimateSettings
    from tunery.train.estimate import estimate as run_estimate

    if method in ("lora", "full"):  # the older spelling: an adapter of supervised fine-tuning
        if adapter not in (None, method):
            raise TuneryError(f"method {method!r} means adapter {method!r}, but adapter {adapter!r} is given")
        method, adapter = "sft", method
    given = {"gpu_hour_price": gpu_hour_price, "utilisation": utilisation, "lora_rank": lora_rank, "adapter": adapter}
    settings = EstimateSettings(
        method=method,
        epochs=epochs,
        max_seq_len=max_seq_len,
        **{k: v for k, v in given.items() if v is not None},
    )
    return run_estimate(path, model, settings)


def run_config(config: RunConfig | str | Path | dict | None = None, /, **settings: Any) -> RunConfig:
    """A validated `RunConfig` from a config object, a YAML file or a dict, with `settings` on top.

    Nested sections are dicts (`lora={"r": 8}`) or dotted strings in a dict (`{"lora.r": 8}`).

    Raises:
        TuneryError: unknown keys or bad values, each named.
    """
    from tunery.train.config import RunConfig, load_config, merge

    dotted = {k: v for k, v in settings.items() if "." in k}
    overrides = {k: v for k, v in settings.items() if "." not in k}
    if isinstance(config, dict):
        dotted.update({k: v for k, v in config.items() if "." in k})
        overrides = merge({k: v for k, v in config.items() if "." not in k}, overrides)
        config = None
    for key, value in dotted.items():  # parse only the key path; the value keeps its Python type
        *parents, leaf = key.split(".")
        node = overrides
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    overrides = {k: str(v) if isinstance(v, Path) else v for k, v in overrides.items()}
    if isinstance(config, RunConfig):
        if not overrides:
            return config
        return load_config(None, merge(config.model_dump(mode="json", exclude_unset=True), overrides), source="config")
    if config is None and "data" not in overrides:
        raise TuneryError("no training data given", hint="pass data='train.jsonl', or a config file")
    return load_config(config, overrides, source=str(config or "arguments"))


def train(
    config: RunConfig | str | Path | dict | None = None,
    /,
    *,
    resume: str | Path | None = None,
    **settings: Any,
) -> Run:
    """Fine-tune a model (SFT or DPO, LoRA or full) and return the finished run.

    `tunery.train(data="train.jsonl", validation="valid.jsonl", output="runs/first")` is
    `tunery train --data train.jsonl --validation valid.jsonl --output runs/first`; a YAML path
    or a `RunConfig` works as `--config`, and `settings` override it (`n_epochs=1`,
    `lora={"r": 8}`). After a successful run with validation data, the tuned model's answers on
    it are graded (`final_eval`), as the CLI does.

    Args:
        resume: a run directory to continue from its newest checkpoint, with its saved config.

    Returns:
        The `Run`; `run.status["state"]` says whether it succeeded or was interrupted.

    Raises:
        TrainingFailed: bad data, NaN loss or out of memory; the run's status.json records it.
        TuneryError: a bad config, or a run directory that already holds a run.
    """
    import os

    from tunery.data.jsonl import check_data_file

    if resume is None:
        cfg = run_config(config, **settings)
        for path in (cfg.data, cfg.validation):  # before torch loads, in `tunery validate`'s words
            if path is not None:
                check_data_file(path)

    import torch

    _quiet_library_deprecations()

    from tunery.run import Run
    from tunery.train import distributed
    from tunery.train.methods import METHODS, data_parallel_names
    from tunery.train.prepare import TrainingFailed, default_output, fail_run

    if resume is not None:
        if config is not None or settings:
            raise TuneryError("resume continues a run with its saved config; it takes no other settings")
        resumed = Run(resume)
        cfg, resume_dir = None, Path(resume)
        method, strategy = resumed.config.method, resumed.config.distributed.strategy
    else:
        resume_dir = None
        method, strategy = cfg.method, cfg.distributed.strategy
    if strategy == "fsdp" and int(os.environ.get("WORLD_SIZE", "1")) < 2:
        raise TuneryError(
            "distributed.strategy=fsdp shards the model over several processes, and this is one",
            hint="add --nproc 2 (or more), or set distributed.strategy=ddp",
        )
    if distributed.launched() and int(os.environ["WORLD_SIZE"]) > 1:
        if not METHODS[method].data_parallel:
            raise TuneryError(
                f"data-parallel training supports --method {data_parallel_names()} only; run {method} in one process"
            )
        if cfg is not None and cfg.output is None:
            raise TuneryError("every process must write the same run", hint="under torchrun, pass --output RUN_DIR")
    if cfg is not None and cfg.output is None:
        cfg = cfg.model_copy(update={"output": default_output(cfg.method)})
    train_method = METHODS[method].load_loop()
    run_dir = resume_dir or cfg.output
    main = distributed.is_main()  # with several processes (torchrun, --nproc), rank 0 reports
    tracking = _open_trackers(cfg or resumed.config, Path(run_dir), resuming=resume_dir is not None) if main else None
    with tracking or contextlib.nullcontext():
        try:
            with distributed.process_group():
                path = train_method(cfg, resume_dir=resume_dir)
        except TrainingFailed as exc:
            if main and run_dir is not None and Path(run_dir).exists():
                fail_run(Path(run_dir), exc)
            raise
        except torch.OutOfMemoryError as exc:
            error = TrainingFailed("out_of_memory", f"out of memory: {exc}. Lower micro_batch_tokens or max_seq_len.")
            if main and run_dir is not None and Path(run_dir).exists():
                fail_run(Path(run_dir), error)
            raise error from None
        run = Run(path)
        if main and run.succeeded:
            _select_checkpoint(run)  # first: the run's registry id is the hash of final/'s manifest
            from tunery.lineage.hooks import register_finished_run

            register_finished_run(run.path)  # lineage, datasets, model card: warns, never fails a finished run
            _final_eval(run)
    if tracking is not None:
        tracking.finish(
            run.status.get("state", "failed"), [run.path / "eval" / "report.json", run.path / "final" / "README.md"]
        )
    return run


def _open_trackers(config: RunConfig, run_dir: Path, *, resuming: bool):
    """The run's `report_to` trackers (None without any), opened before training so that a missing
    extra stops the run at once, and never inside a directory that holds another run."""
    if not config.report_to:
        return None
    from tunery.train.prepare import refuse_existing_run
    from tunery.train.rundir import RunDir
    from tunery.train.trackers import Tracking

    if not resuming:
        refuse_existing_run(RunDir(run_dir))
    return Tracking(config, run_dir)


def _select_checkpoint(run: Run) -> None:
    """With select=best, publish the best-scoring checkpoint as final/ (before the run is registered)."""
    if run.config.select == "last":
        return
    from tunery.eval.select import select_final

    select_final(run.path, device=run.config.device, log=lambda text: print(text, flush=True))


def _final_eval(run: Run) -> None:
    """Grade the tuned model's own answers on the validation set; the report stays with the run."""
    from tunery.eval import print_eval_report
    from tunery.eval.report import show_report
    from tunery.train.methods import METHODS

    config = run.config
    if not (config.validation and config.final_eval and METHODS[config.method].final_eval):
        return
    from tunery.eval.progress import AnswerProgress
    from tunery.eval.report import examples_path
    from tunery.train.rundir import RunDir

    status = RunDir(run.path)

    def keep_status_current(what: str, done: int, total: int, eta: float | None) -> None:
        # The job's events and page read this: the run has trained and now answers the validation set.
        status.write_phase({"name": "evaluating", "done": done, "total": total, "eta_s": eta})

    output = run.path / "eval" / "report.json"
    progress = AnswerProgress("[final eval]", on_update=keep_status_current)
    try:
        report = evaluate(config.validation, adapter=run.path, device=config.device, output=output, progress=progress)
    except BaseException:
        status.write_phase(None)  # no evaluation is going on; a finished one stays recorded (done = total)
        raise
    written = (output, examples_path(output))
    show_report(report.to_dict(), written, as_json=False, print_table=lambda: print_eval_report(report))


def dry_run(config: RunConfig | str | Path | dict | None = None, /, **settings: Any) -> DryRun:
    """What `train` would do, without training or writing anything: the resolved plan (every
    "auto" with its reason), the peak memory and the wall-clock time on this machine.

    Reads the data and the tokenizer; never loads the weights.

    Raises:
        TuneryError: a bad config, data with errors, or a model that cannot be found.
    """
    from tunery.train.dry_run import plan_run

    return plan_run(run_config(config, **settings))


def evaluate(
    data: str | Path,
    *,
    model: str | None = None,
    adapter: str | Path | None = None,
    graders: Sequence[str] | None = None,
    batch_size: int = 16,
    max_new_tokens: int | None = None,
    with_loss: bool = True,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    output: str | Path | None = None,
    log: Log | None = None,
    response_format: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> EvalReport:
    """Score a model, or a fine-tuned run, on held-out examples (the last assistant turn is the
    reference).

    Args:
        model: the base model; may be left out when `adapter` records its base.
        adapter: a run directory (its final/ is used), an adapter directory or a full model.
        graders: grader names or `module:function`; None picks them from the references.
        output: where to write the summary JSON (answers go beside it as .examples.jsonl); the
            report is then also attached to the run's lineage and model card. None writes nothing.
        response_format: a JSON schema or OpenAI response_format file: answers are constrained to it,
            as the server constrains them, and the report keeps the unconstrained scores beside.

    Raises:
        TuneryError: bad data, unknown graders, models that cannot be found.
    """
    from tunery.eval import evaluate as run_evaluate
    from tunery.eval import write_eval_report
    from tunery.lineage.hooks import record_report

    if model is None and adapter is None:
        raise TuneryError("nothing to evaluate", hint="give a model, an adapter (run directory), or both")
    _quiet_library_deprecations()
    report = run_evaluate(
        data,
        model=model,
        adapter=adapter,
        graders=graders,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        with_loss=with_loss,
        device=device,
        log=log,
        response_format=response_format,
        progress=progress,
    )
    if output is not None:
        written = write_eval_report(report, output)
        record_report("eval", adapter, written[0], report.to_dict())
    return report


def compare(
    tuned: str | Path,
    *,
    train: str | Path,
    data: str | Path,
    base: str | None = None,
    shots: int = 5,
    seed: int = 0,
    graders: Sequence[str] | None = None,
    metric: str | None = None,
    batch_size: int = 16,
    max_new_tokens: int | None = None,
    forgetting: bool = True,
    forgetting_per_skill: int | None = None,
    with_loss: bool = True,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    output: str | Path | None = None,
    log: Log | None = None,
    response_format: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> CompareReport:
    """Was fine-tuning worth it? Zero-shot and few-shot prompting of the base vs the tuned model
    on `data`, with a verdict and the forgetting probe.

    Args:
        tuned: a run directory, an adapter directory or a full model directory.
        train: the training file the few-shot examples are drawn from (never from `data`).
        base: the base model; None takes the one the tuned run records.
        metric: the grader the verdict is about; None picks the strictest that separates the systems.
        forgetting_per_skill: only the first N items of each skill in the forgetting measures
            (quicker, wider intervals); None uses all 240 probe items and 310 general prompts.
        output: where to write the summary JSON (and the answers beside it); None writes nothing.
        response_format: a JSON schema or OpenAI response_format file: every system also answers
            constrained to it, and the verdict compares the constrained systems.

    Raises:
        TuneryError: bad files, unfitting graders, models that cannot be found, too few shots.
    """
    from tunery.eval import compare as run_compare
    from tunery.eval import write_compare_report
    from tunery.lineage.hooks import record_report

    _quiet_library_deprecations()
    report = run_compare(
        base,
        tuned,
        train,
        data,
        shots=shots,
        seed=seed,
        graders=graders,
        metric=metric,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        forgetting=forgetting,
        forgetting_per_skill=forgetting_per_skill,
        with_loss=with_loss,
        device=device,
        log=log,
        response_format=response_format,
        progress=progress,
    )
    if output is not None:
        written = write_compare_report(report, output)
        record_report("compare", tuned, written[0], report.to_dict())
    return report


def export(
    run: str | Path,
    output: str | Path,
    *,
    format: Literal["hf", "vllm", "gguf", "ollama"] = "hf",
    merged: bool = True,
    quant: str = "f16",
    name: str | None = None,
) -> Exported:
    """Write a finished run where other tools load it.

    Args:
        format: hf, a merged Hugging Face model directory; vllm, the layout `vllm serve` loads
            (an adapter beside its base unless `merged`); gguf, a directory holding one .gguf of
            the merged model for llama.cpp and LM Studio; ollama, the same plus a Modelfile.
        merged: vllm only: merge the adapter into the weights (hf, gguf and ollama always merge).
        quant: gguf and ollama: the weights' type, one of `tunery.export_gguf.QUANTS`.
        name: the model name vLLM serves or Ollama creates (default: the run directory's name).

    Returns:
        `Exported`: `.path`, `.kind`, and `.command`, the command that serves or loads it, if any.

    Raises:
        TuneryError: not a finished run, or a model the format cannot hold.
    """
    from tunery.export import Exported, export_vllm, merge

    if format == "vllm":
        return export_vllm(run, output, merged=merged, name=name)
    if format in ("gguf", "ollama"):
        from tunery.export_gguf import export_gguf

        return export_gguf(run, output, quant=quant, ollama=format == "ollama", name=name)
    if format != "hf":
        raise TuneryError(f"unknown export format {format!r}", hint="hf, vllm, gguf or ollama")
    if name is not None:
        raise TuneryError("name is the model name vLLM or Ollama serves", hint="use it with format vllm or ollama")
    if not merged:
        raise TuneryError("the hf format is a merged model", hint="format='vllm', merged=False keeps the adapter")
    return Exported(merge(run, output), [], "merged")
