"""`tunery train`: fine-tune a model (SFT or DPO, LoRA or full) from a config file or flags."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Fine-tune a model: supervised (sft) or preference (dpo), with LoRA or full weights."
EXAMPLES = """\
  tunery train --model smollm2-135m-instruct --data train.jsonl --validation valid.jsonl --output runs/my-run
  tunery train --config configs/sft-lora.yaml n_epochs=1 batch_size=8 seed=1
  tunery train --method dpo --data prefs.jsonl --output runs/dpo dpo.beta=0.2
  tunery train --resume runs/my-run            # continue after Ctrl-C, SIGTERM or a crash

  Any config key can be overridden as key=value (nested: lora.r=8). Keys: see configs/*.yaml.
  Ctrl-C / SIGTERM finish the current step, save a checkpoint and exit 0.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--config", type=Path, help="YAML run config")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run from its newest checkpoint")
    parser.add_argument("--model", help="base model: embedded name, hub id, directory or .gguf")
    parser.add_argument("--data", help="training JSONL")
    parser.add_argument("--validation", help="validation JSONL")
    parser.add_argument("--method", choices=["sft", "dpo"], help="sft (default) or dpo")
    parser.add_argument("--adapter", choices=["lora", "full"], help="lora (default) or full fine-tuning")
    parser.add_argument("--output", help="run directory (default runs/<method>-<time>)")


def run(args: argparse.Namespace) -> int:
    from tunery.config import load_config, parse_overrides
    from tunery.errors import TuneryError

    if args.resume is not None:
        if args.config or args.overrides or args.data or args.model:
            raise TuneryError("--resume continues a run with its saved config; it takes no other settings")
        return _train(None, args.resume)
    flags = {k: getattr(args, k) for k in ("model", "data", "validation", "method", "adapter", "output")}
    overrides = {k: v for k, v in flags.items() if v is not None}
    overrides.update(parse_overrides(args.overrides))
    if args.config is None and "data" not in overrides:
        raise TuneryError("no training data given", hint="pass --data train.jsonl or --config run.yaml")
    return _train(load_config(args.config, overrides, source=str(args.config or "command line")), None)


def _train(config, resume_dir: Path | None) -> int:
    import warnings

    import torch

    # peft calls a transformers API deprecated in v6; the warning is theirs, not the user's.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

    from tunery.train.prepare import TrainingFailed, default_output, fail_run

    if config is not None and config.output is None:
        config = config.model_copy(update={"output": default_output(config.method)})
    method = config.method if config is not None else _saved_method(resume_dir)
    if method == "dpo":
        from tunery.train.dpo import train
    else:
        from tunery.train.sft import train
    run_dir = resume_dir or config.output
    try:
        path = train(config, resume_dir=resume_dir)
    except TrainingFailed as exc:
        if run_dir is not None and Path(run_dir).exists():
            fail_run(Path(run_dir), exc)
        raise
    except torch.OutOfMemoryError as exc:
        error = TrainingFailed("out_of_memory", f"out of memory: {exc}. Lower micro_batch_tokens or max_seq_len.")
        if run_dir is not None and Path(run_dir).exists():
            fail_run(Path(run_dir), error)
        raise error from None
    from tunery.train.rundir import RunDir

    status = RunDir(path).read_status() or {}
    if status.get("state") == "succeeded":
        _final_eval(Path(path))
        print(f"done: {path}/final  (metrics in {path}/metrics.jsonl)")
    return 0


def _final_eval(run_dir: Path) -> None:
    """Grade the tuned model's own answers on the validation set; the report stays with the run."""
    from tunery.config import load_config
    from tunery.eval import evaluate, print_eval_report, write_eval_report

    config = load_config(run_dir / "config.yaml")
    if not (config.validation and config.final_eval):
        return
    from tunery.lineage.hooks import record_report

    report = evaluate(config.validation, adapter=run_dir, device=config.device)
    summary, _ = write_eval_report(report, run_dir / "eval" / "report.json")
    record_report("eval", run_dir, summary, report.to_dict())  # into the run's lineage and model card
    print_eval_report(report)


def _saved_method(run_dir: Path) -> str:
    import yaml

    config = Path(run_dir) / "config.yaml"
    return (yaml.safe_load(config.read_text()) or {}).get("method", "sft") if config.is_file() else "sft"
