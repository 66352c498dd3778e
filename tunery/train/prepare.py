"""Everything around the loop that SFT and DPO share: data in, run directory, resume, final model.

`prepare` checks the data and resolves the model; `start_or_resume` restores the newest
checkpoint exactly (weights, optimizer, schedule, RNG); `finish_run` publishes `final/` with its
manifest. Keeping this here means both loops checkpoint and resume the same way.

With several processes (tunery/train/distributed.py) every rank prepares, plans and restores the
same way, and only rank 0 writes: config, status, metrics, checkpoints and `final/`. The other
ranks wait at a barrier while it does.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import torch

from tunery import __version__
from tunery.data.formats import FORMATS, Example, load_examples
from tunery.data.render import ChatTokenizer
from tunery.errors import TuneryError
from tunery.fsio import atomic_write, file_sha256, publish
from tunery.hardware import cpu_native_bf16, cpu_threads, threads_reason
from tunery.models import decoder_linear_layers, describe_model, resolve_model, weights_hash
from tunery.train import checkpoint as ckpt
from tunery.train import distributed as dist
from tunery.train.config import RunConfig, dump_config, flatten, load_config
from tunery.train.methods import METHODS, Method
from tunery.train.modeling import adapted_modules, count_parameters
from tunery.train.plan import Plan, resolve
from tunery.train.report import print_plan
from tunery.train.rundir import RunDir

T = TypeVar("T")
ALL_CHECKPOINTS = 1_000_000


class TrainingFailed(TuneryError):
    """The run stopped on a problem with the data or the numbers; status.json records it."""

    exit_code = 1

    def __init__(self, code: str, message: str, *, step: int = 0):
        super().__init__(message)
        self.code = code
        self.step = step


def _check_data(config: RunConfig, tokenizer: ChatTokenizer) -> tuple[list[Example], list[Example]]:
    """Validate the data files (leakage between them included) and load them.

    Any error stops the run before the model loads, naming the file, the line and the fix. A
    special token of the model's inside message text is an error with `special_tokens=refuse`,
    and is reported with the other choices (trained as the token, or as plain text).
    """
    from tunery.data.jsonl import check_data_file
    from tunery.data.validate import validate_file

    for path in (config.data, config.validation):
        if path is not None:
            check_data_file(path)  # the path's own problems, as `tunery validate` reports them (exit 2)
    report = validate_file(
        config.data,
        validation=config.validation,
        special_tokens=config.special_tokens,
        special_texts=tokenizer.special_texts,
    )
    if report.errors:
        first = "; ".join(f"{Path(i.file).name}:{i.line}: {i.message}" for i in report.errors[:3])
        raise TrainingFailed(
            "invalid_data",
            f"{config.data} has {report.error_count} error(s): {first}. "
            f"Run `tunery validate {config.data}` for the full report.",
        )
    count = report.issue_counts.get("special_tokens_in_content", 0)
    if count:
        first = next(i for i in report.issues if i.code == "special_tokens_in_content")
        _report_special_tokens(
            config, count, f"{Path(first.file).name}:{first.line}: {first.message.partition('; fix:')[0]}"
        )
    train = load_examples(config.data)
    validation = load_examples(config.validation) if config.validation else []
    method = METHODS[config.method]
    wanted = FORMATS[method.data_format].example
    for path, examples in ((config.data, train), (config.validation, validation)):
        if examples and not isinstance(examples[0], wanted):
            raise TrainingFailed("invalid_data", f"{path} is not {method.data_format} data ({_format_hint(method)})")
    return train, validation


def _check_prompts(config: RunConfig, tokenizer: ChatTokenizer, files: dict[Path, list]) -> None:
    """`_check_data`'s special-token check, for data that a method loads itself (RFT's prompts)."""
    import json

    from tunery.data.rules import RULES

    found = {}  # (file, line) → what, the first special token of each example
    for path, examples in files.items():
        for example in examples:
            for i, message in enumerate(example.messages, start=1):
                content = message.get("content")
                token = tokenizer.special_token_in(content) if isinstance(content, str) else None
                if token and (path, example.line) not in found:
                    what = f"the chat template's special token {json.dumps(token)} in messages[{i}] ({message.get('role')})"
                    found[path, example.line] = what
    if not found:
        return
    (path, line), what = next(iter(found.items()))
    where = f"{path.name}:{line}: {what}"
    if config.special_tokens == "refuse":
        raise TrainingFailed(
            "invalid_data",
            f"{path} has {len(found)} error(s): {where}; fix: {RULES['special_tokens_in_content'].fix}",
        )
    _report_special_tokens(config, len(found), where)


def _report_special_tokens(config: RunConfig, count: int, where: str) -> None:
    """One line on stderr for the `count` examples whose message text holds a special token (the
    first at `where`), and what `special_tokens` does with them."""
    if not dist.is_main():
        return
    if config.special_tokens == "escape":
        print(
            f"special_tokens=escape: {count} example(s) hold a special token in message text, "
            f"tokenised as plain text (first: {where})",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(
            f"warning: special_tokens_in_content: {count} example(s) hold a special token in message text, "
            f"trained as the token, so the text can forge a turn (first: {where}); "
            "set special_tokens=escape to train it as plain text, or special_tokens=refuse to stop",
            file=sys.stderr,
            flush=True,
        )


def _format_hint(method: Method) -> str:
    """What the data must look like for `method`, and which method fits the other kinds of data."""
    others = [
        f"--method {other.name} for {other.data_format} data"
        for other in METHODS.values()
        if other.data_format != method.data_format
    ]
    wanted = FORMATS[method.data_format]
    return f"{method.name.upper()} needs {wanted.noun}, {wanted.shape}" + (
        f"; use {' or '.join(others)}" if others else ""
    )


@dataclass
class Prepared:
    config: RunConfig
    run: RunDir
    model_dir: Path
    tokenizer: ChatTokenizer
    train: list[Example]
    validation: list[Example]
    resume: bool
    data_hashes: dict[str, str] = field(default_factory=dict)
    plan: Plan | None = None
    replayed: int = 0  # of `train`, the base model's own answers mixed in at the end (tunery/train/replay.py)

    def make_plan(self, *, longest: int) -> Plan:
        """Resolve the config against the data and the machine, print it, and save it."""
        info = describe_model(self.config.model, self.model_dir)
        plan = resolve(
            self.config,
            n_examples=len(self.train),
            longest=longest,
            context_length=info.context_length,
            cuda_available=torch.cuda.is_available(),
            bf16_supported=torch.cuda.is_bf16_supported() if torch.cuda.is_available() else cpu_native_bf16(),
            linear_layers=decoder_linear_layers(self.model_dir),
        )
        # Processes on one machine share its cores.
        self.plan = replace(plan, threads=cpu_threads(dist.local_world_size()))
        self.plan.reasons["threads"] = threads_reason()
        if dist.is_main():
            atomic_write(self.run.config_file, dump_config(self.plan.config))
        return self.plan

    def manifest(self, metrics: dict | None = None) -> dict:
        plan = self.plan
        return {
            "tunery_version": __version__,
            "method": plan.config.method,
            "adapter": plan.config.adapter,
            "base_model": plan.config.model,
            "base_model_path": str(self.model_dir),
            "base_model_sha256": weights_hash(self.model_dir),
            "data": self.data_hashes,
            # Of the examples trained per epoch, how many were the base model's own answers (replay).
            "replay_examples": self.replayed,
            "config": plan.config.model_dump(mode="json"),
            "metrics": metrics or {},
            "libraries": {"torch": torch.__version__, **_library_versions(), "python": platform.python_version()},
            "created_at": datetime.now().isoformat(timespec="seconds"),
        }

    def interrupted(self, step: int, signal_name: str) -> Path:
        """Record that a signal stopped the run after `step` (its checkpoint is saved); say how to resume."""
        if dist.is_main():
            self.run.write_status("interrupted", step, self.plan.total_steps)
            nproc = f" --nproc {dist.world_size()}" if dist.world_size() > 1 else ""
            print(
                f"{signal_name}: stopped after step {step}; checkpoint saved. "
                f"Resume with: tunery train --resume {self.run.path}{nproc}",
                flush=True,
            )
        return self.run.path

    def save(self, step: int, model, optimizer, scheduler, elapsed_s: float, *, protect: int | None = None) -> Path:
        """Rank 0 writes checkpoint `step`; every rank returns once it is complete.

        `protect`: a step whose checkpoint pruning must keep (early stopping's best so far).
        """
        path = self.run.checkpoints / f"step-{step:06d}"
        weights, optimizer_state = dist.full_state(model, optimizer)  # gathered on rank 0 if sharded (FSDP)
        rng_states = dist.gather_objects(ckpt.rng_state())
        if dist.is_main():
            path = self._write_checkpoint(
                step, model, weights, optimizer_state, scheduler, elapsed_s, rng_states, protect
            )
        dist.barrier()
        return path

    def _write_checkpoint(
        self,
        step: int,
        model,
        weights: dict | None,
        optimizer_state: dict,
        scheduler,
        elapsed_s: float,
        rng_states: list[dict],
        protect: int | None,
    ) -> Path:
        metrics = _latest_metrics(self.run)
        return ckpt.save_checkpoint(
            self.run.checkpoints,
            step=step,
            model=model,
            weights=weights,
            model_dir=self.model_dir,
            trainer_state={
                "step": step,
                "optimizer": optimizer_state,
                "scheduler": scheduler.state_dict(),
                "elapsed_s": elapsed_s,
            },
            manifest={**self.manifest(metrics), "total_steps": self.plan.total_steps},
            # select=best scores every checkpoint once training ends, then prunes (tunery.eval.select).
            keep=self.plan.config.keep_checkpoints if self.plan.config.select == "last" else ALL_CHECKPOINTS,
            rng_states=rng_states,
            protect=protect,
        )


def _library_versions() -> dict:
    import peft
    import transformers

    return {"transformers": transformers.__version__, "peft": peft.__version__}


def _latest_metrics(run: RunDir) -> dict:
    """The last value of every metric, and the run's token totals: `trained_tokens` as OpenAI counts
    it (every token of the examples, once per epoch) and `loss_tokens` (those the loss is taken on)."""
    latest: dict = {}
    steps: dict[int, tuple[int, int]] = {}  # by step: a step repeated after a resume counts once
    for record in run.read_metrics():
        if record.get("type") == "early_stop":  # an event, not a metric; the manifest records it apart
            continue
        latest.update({k: v for k, v in record.items() if k != "type"})
        if record.get("type") == "train":
            steps[record["step"]] = (int(record.get("tokens") or 0), int(record.get("loss_tokens") or 0))
    latest.pop("tokens", None)
    latest.pop("loss_tokens", None)
    return {
        **latest,
        "trained_tokens": sum(t for t, _ in steps.values()),
        "loss_tokens": sum(loss for _, loss in steps.values()),
    }


def default_output(method: str) -> Path:
    return Path("runs") / f"{method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def refuse_existing_run(run: RunDir) -> None:
    """A new run never writes into a directory that holds a finished or checkpointed one.

    Raises:
        TuneryError: naming the directory, and how to resume it when it can be.
    """
    if (run.final / "tunery.json").is_file():  # finished: there is nothing to resume
        raise TuneryError(
            f"{run.path} already holds a finished run",
            hint="choose another --output (or delete that directory to train it again)",
        )
    if ckpt.latest_checkpoint(run.checkpoints):
        raise TuneryError(
            f"{run.path} already holds an unfinished run",
            hint=f"resume it with `tunery train --resume {run.path}`, or choose another --output",
        )


def prepare(config: RunConfig, *, resume_dir: Path | None = None) -> Prepared:
    """Check the data, resolve the model and open the run directory.

    On resume, the config comes from the run's own resolved `config.yaml`.
    """
    if resume_dir is not None:
        run = RunDir(resume_dir)
        if not run.config_file.is_file():
            raise TuneryError(f"{resume_dir} is not a tunery run directory (no config.yaml)")
        config = load_config(run.config_file)
        if "early_stopping" not in config.model_fields_set:  # planned before early stopping existed
            config = config.model_copy(update={"early_stopping": "off"})
    else:
        # Absolute paths, so the saved config means the same thing from any working directory.
        config = config.model_copy(
            update={
                "data": config.data.resolve(),
                "validation": config.validation.resolve() if config.validation else None,
                "output": (config.output or default_output(config.method)).resolve(),
            }
        )
        for key in METHODS[config.method].input_files.values():  # e.g. rft.grader
            section, name = key.split(".")
            block = getattr(config, section)
            if getattr(block, name) is not None:
                block = block.model_copy(update={name: Path(getattr(block, name)).resolve()})
                config = config.model_copy(update={section: block})
        run = RunDir(config.output)
        refuse_existing_run(run)
    run.create()
    if dist.is_main():
        for line in ckpt.sweep(run.path, run.checkpoints):
            print(f"{run.path}: {line}", file=sys.stderr, flush=True)
    model_dir = resolve_model(config.model)
    tokenizer = ChatTokenizer.from_dir(model_dir, escape_special_tokens=config.special_tokens == "escape")
    method = METHODS[config.method]
    load_data = method.hook("load_data")
    if load_data is not None:  # e.g. RFT: prompts checked against the grader's {{item.x}} fields
        try:
            train, validation = load_data(config)
        except TuneryError as exc:
            raise TrainingFailed("invalid_data", str(exc)) from None
        _check_prompts(
            config, tokenizer, {config.data: train, **({config.validation: validation} if config.validation else {})}
        )
    else:
        train, validation = _check_data(config, tokenizer)
    if not train:
        raise TrainingFailed("invalid_data", f"{config.data} holds no examples")
    hashes = {"train": file_sha256(config.data)}
    if config.validation:
        hashes["validation"] = file_sha256(config.validation)
    for role, key in method.input_files.items():
        hashes[role] = file_sha256(Path(flatten(config.model_dump(mode="json"))[key]))
    if resume_dir is not None:
        _check_unchanged(run, config, model_dir, hashes)
    return Prepared(
        config=config,
        run=run,
        model_dir=model_dir,
        tokenizer=tokenizer,
        train=train,
        validation=validation,
        resume=resume_dir is not None,
        data_hashes=hashes,
    )


def drop_untrained(prepared: Prepared, train: list[T], valid: list[T], trains: Callable[[T], bool]) -> bool:
    """Remove the examples (or pairs) that `max_seq_len` left with no trained token, in place.

    A loss over no token is undefined: IPO, SimPO and RPO divide by the answer's length (NaN),
    and SFT would count an example that trains nothing. `tunery validate --max-seq-len N` names
    them (no_trained_token); here the run says how many it dropped and where, and
    `prepared.train` / `.validation` follow, so the plan counts only what trains.
    Returns whether any training example was dropped (the plan must then be made again).
    """
    unit = FORMATS[METHODS[prepared.config.method].data_format].unit  # "examples", "pairs"
    dropped_train = False
    for role, rendered, examples in (("training", train, prepared.train), ("validation", valid, prepared.validation)):
        keep = [i for i, r in enumerate(rendered) if trains(r)]
        if len(keep) == len(rendered):
            continue
        lines = [examples[i].line for i in sorted(set(range(len(rendered))) - set(keep))]
        if dist.is_main():
            shown = ", ".join(map(str, lines[:10])) + (", …" if len(lines) > 10 else "")
            print(
                f"dropped {len(lines)} of {len(rendered)} {role} {unit} (lines {shown}): "
                f"max_seq_len={prepared.plan.config.max_seq_len} cuts away every trained token",
                file=sys.stderr,
                flush=True,
            )
        rendered[:] = [rendered[i] for i in keep]
        examples[:] = [examples[i] for i in keep]
        dropped_train |= role == "training"
    if not train:
        raise TrainingFailed(
            "invalid_data",
            f"{prepared.config.data}: max_seq_len={prepared.plan.config.max_seq_len} leaves no {unit} "
            "with a trained token; raise max_seq_len or shorten the prompts",
        )
    return dropped_train


ROLES = {"train": "training", "validation": "validation"}


def _check_unchanged(run: RunDir, config: RunConfig, model_dir: Path, hashes: dict[str, str]) -> None:
    """Refuse to resume on other data or another base model than the newest checkpoint's.

    The epoch order is a list of indices into the training examples: on an edited file it picks
    other examples, and the run would go on without a word.
    """
    latest = ckpt.latest_checkpoint(run.checkpoints)
    manifest_file = latest / "tunery.json" if latest else None
    if manifest_file is None or not manifest_file.is_file():
        return
    saved = json.loads(manifest_file.read_text())
    files = {"train": config.data, "validation": config.validation}
    changed = [
        (f"{files.get(role) or role} ({ROLES.get(role, role)} data)", before, hashes.get(role, "none"))
        for role, before in saved.get("data", {}).items()
        if hashes.get(role) != before
    ]
    base = saved.get("base_model_sha256")
    if base is not None and (now := weights_hash(model_dir)) != base:
        changed.append((f"the base model {config.model} ({model_dir})", base, now))
    if changed:
        what = "; ".join(f"{name}: sha256 {before[:12]} then, {now[:12]} now" for name, before, now in changed)
        raise TuneryError(
            f"cannot resume {run.path}: changed since step {saved.get('step', latest.name)} was saved: {what}",
            hint="restore what the run was trained on, or start a new run with another --output",
        )


def start_or_resume(prepared: Prepared, plan: Plan, model, optimizer, scheduler, *, facts_model) -> dict:
    """Restore the newest checkpoint if resuming; print the resolved settings either way."""
    run = prepared.run
    state = {"step": 0, "elapsed_s": 0.0}
    latest = ckpt.latest_checkpoint(run.checkpoints) if prepared.resume else None
    if latest is not None:
        saved = restore(model, optimizer, latest)
        scheduler.load_state_dict(saved["scheduler"])
        ckpt.set_rng_state(ckpt.saved_rng_state(saved, dist.rank()))
        state = {"step": saved["step"], "elapsed_s": saved.get("elapsed_s", 0.0)}
        if dist.is_main():
            run.truncate_metrics(state["step"])
    elif dist.is_main():  # a new run, or a resume with no complete checkpoint: both start at step 1
        run.metrics_file.unlink(missing_ok=True)
    if not dist.is_main():
        return state
    trainable, total = count_parameters(facts_model)
    print_plan(
        plan,
        {
            "examples": f"{len(prepared.train)} ({len(prepared.train) - prepared.replayed} yours + {prepared.replayed} replay)"
            if prepared.replayed
            else len(prepared.train),
            "steps": f"{plan.total_steps} ({plan.steps_per_epoch}/epoch)",
            "warmup steps": plan.warmup_steps,
            "trainable parameters": f"{trainable:,} of {total:,} ({100 * trainable / total:.2f}%)",
            **_adapter_facts(facts_model),
            "threads": plan.threads,
            "processes": dist.world_size(),
            "resumed from": latest.name if latest else "-",
        },
    )
    run.write_status("running", state["step"], plan.total_steps)
    return state


def restore(model, optimizer, checkpoint: Path) -> dict:
    """Load a checkpoint's weights and optimizer state into the model; returns its trainer state."""
    saved = ckpt.load_trainer_state(checkpoint)
    if dist.is_sharded(model):  # FSDP: rank 0's whole copies, each rank keeps its shard
        dist.load_full_state(model, optimizer, ckpt.read_full_weights(checkpoint), saved["optimizer"])
    else:
        ckpt.load_weights(model, checkpoint)
        optimizer.load_state_dict(saved["optimizer"])
    return saved


def _adapter_facts(model) -> dict:
    """The modules a LoRA adapter was put on, as the user should check them (none: full fine-tune)."""
    count, names = adapted_modules(model)
    return {"adapted modules": f"{count}: {', '.join(names)}"} if count else {}


def finish_run(
    prepared: Prepared, plan: Plan, model, final_metrics: dict, *, early_stopping: dict | None = None
) -> Path:
    """Publish RUN_DIR/final atomically with its manifest, the results CSV, and status (rank 0).

    `early_stopping`: the summary of an early stop (`EarlyStopping.summary`); `model` then holds
    the best step's weights, and the manifest and status.json record the stop.
    """
    run = prepared.run
    weights, _ = dist.full_state(model)  # every rank joins the gather when sharded (FSDP)
    if not dist.is_main():
        dist.barrier()
        return run.path
    metrics = {**_latest_metrics(run), **final_metrics}
    tmp = run.path / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    ckpt.save_model_files(model, prepared.model_dir, tmp, weights)
    manifest = {**prepared.manifest(metrics), "step": plan.total_steps}  # the step final/'s weights are from
    if early_stopping:
        manifest.update(step=early_stopping["best_step"], early_stopping=early_stopping)
    atomic_write(tmp / "tunery.json", json.dumps(manifest, indent=2, default=str))
    publish(tmp, run.final)
    run.write_results_csv()
    last = early_stopping["stopped_at_step"] if early_stopping else plan.total_steps
    extra = {"early_stopping": early_stopping} if early_stopping else {}
    run.write_status("succeeded", last, plan.total_steps, **extra)
    dist.barrier()
    return run.path


def fail_run(run_dir: Path, error: TrainingFailed) -> None:
    run = RunDir(run_dir)
    status = run.read_status() or {}
    step = error.step or status.get("step", 0)
    run.write_status("failed", step, status.get("total_steps", 0), {"code": error.code, "message": str(error)})
