"""`tunery estimate`: tokens, FLOPs, time and cost of a fine-tuning run, before running it."""

from __future__ import annotations

import argparse

HELP = "Estimate trained tokens, FLOPs, wall-clock time and cost of fine-tuning a model on a dataset."
EXAMPLES = """\
  tunery estimate train.jsonl --model smollm2-135m-instruct
  tunery estimate train.jsonl --model ./my-model --adapter full --epochs 2
  tunery estimate prefs.jsonl --model smollm2-135m-instruct --method dpo --json
  tunery estimate train.jsonl --model smollm2-135m-instruct --gpu-hour-price 3.5 --utilisation 0.25

Time is FLOPs / (peak × utilisation): this CPU measured by a 1 s matmul, A100/H100/H200 from their
bf16 peaks. Hosted prices are a dated table in tunery/data/prices.py.
exit codes: 0 estimated, 1 the data has validation errors, 2 usage or I/O error
"""


def configure(parser: argparse.ArgumentParser) -> None:
    # Only import-free modules here: every `tunery` command builds this parser.
    from tunery.data.prices import DEFAULT_GPU_HOUR_PRICE, DEFAULT_UTILISATION
    from tunery.models import DEFAULT_MODEL
    from tunery.train.methods import ADAPTERS, METHODS

    parser.add_argument("file", metavar="FILE", help="training data: JSONL, chat or preference format")
    parser.add_argument(
        "--model", metavar="M", default=DEFAULT_MODEL, help=f"model reference (default: {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--method",
        choices=[*METHODS, *ADAPTERS],
        help="as `tunery train --method`; default: the method that trains on the file's format "
        "(sft for chat data, dpo for preference data). lora and full, the older spelling, "
        "mean --method sft --adapter lora|full",
    )
    parser.add_argument("--adapter", choices=list(ADAPTERS), help="as `tunery train --adapter` (default: lora)")
    parser.add_argument(
        "--epochs",
        type=auto_or_positive_int,
        default="auto",
        metavar="auto|N",
        help="auto (OpenAI's rule) or a positive integer",
    )
    parser.add_argument(
        "--max-seq-len",
        type=auto_or_positive_int,
        default="auto",
        metavar="auto|N",
        help="auto (the longest example rounded up to 64, within the model's context) or a positive integer",
    )
    parser.add_argument(
        "--gpu-hour-price",
        type=float,
        metavar="USD",
        default=DEFAULT_GPU_HOUR_PRICE,
        help=f"USD per GPU-hour for the self-hosted cost (default: {DEFAULT_GPU_HOUR_PRICE:.2f})",
    )
    parser.add_argument(
        "--utilisation",
        type=float,
        metavar="FRACTION",
        default=DEFAULT_UTILISATION,
        help=f"share of each device's peak FLOP/s that training reaches, MFU (default: {DEFAULT_UTILISATION})",
    )
    parser.add_argument(
        "--lora-rank",
        type=int,
        metavar="R",
        help="LoRA rank for the adapter's FLOPs (default: lora.r=auto, as in training)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def auto_or_positive_int(text: str):
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from tunery.api import estimate
    from tunery.errors import TuneryError

    try:
        result = estimate(
            args.file,
            model=args.model,
            method=args.method,
            adapter=args.adapter,
            epochs=args.epochs,
            max_seq_len=args.max_seq_len,
            gpu_hour_price=args.gpu_hour_price,
            utilisation=args.utilisation,
            lora_rank=args.lora_rank,
        )
    except ValidationError as exc:
        first_per_option: dict[str, str] = {}
        for error in exc.errors(include_url=False):
            first_per_option.setdefault("--" + str(error["loc"][0]).replace("_", "-"), error["msg"])
        problems = "; ".join(f"{option}: {message}" for option, message in first_per_option.items())
        raise TuneryError(f"bad option: {problems}", hint="see `tunery estimate --help`") from None
    if args.json:
        print(result.to_json())
    else:
        print_estimate(result)
    return 0


def print_estimate(e) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{e.file}[/]: {e.examples:,} {e.format} examples"
        + (f" ({e.sequences:,} sequences)" if e.sequences != e.examples else "")
        + f" · model [bold]{e.model}[/] ({e.parameters / 1e6:.1f}M parameters)"
        + f" · method [bold]{e.method}[/] ({e.adapter}{f' r={e.lora_rank}' if e.lora_rank else ''})"
        + f" · {e.epochs} epochs ({e.epochs_rule}) · batch_size {e.batch_size} · max_seq_len {e.max_seq_len}"
    )
    if e.truncated_sequences:
        console.print(
            f"[yellow]{e.truncated_sequences} sequences exceed max_seq_len; "
            f"{e.truncated_tokens:,} tokens will be cut off[/]"
        )
    if e.untrained_sequences:
        console.print(
            f"[yellow]no_trained_token: {e.untrained_sequences} sequences keep no trained token under max_seq_len "
            "and will be dropped from training; `tunery validate FILE --model M --max-seq-len N` names them[/]"
        )

    tokens = Table("tokens", "per epoch", "total", title="Tokens", title_justify="left")
    tokens.add_row("in the data", f"{e.tokens_per_epoch:,}", f"{e.tokens_total:,}")
    tokens.add_row("trained (loss mask)", f"{e.trained_tokens_per_epoch:,}", f"{e.trained_tokens_total:,}")
    tokens.add_row(
        "computed (with packing padding)",
        f"{round(e.computed_tokens_total / e.epochs):,}",
        f"{e.computed_tokens_total:,}",
    )
    console.print(tokens)
    pad = e.padding
    console.print(
        f"padding at max_seq_len {pad['capacity']}, {pad['rows_per_micro_batch']} rows per micro-batch: "
        f"[bold]{pad['unpacked']:.1%}[/] without packing, [bold]{pad['packed']:.1%}[/] with packing"
    )
    if e.layout["kind"] == "shared prefix":
        console.print(
            f"every example starts with the same {e.layout['shared_prefix_tokens']}-token prompt: training computes "
            f"it once per packed row, [bold]{round(e.computed_tokens_total / e.epochs):,}[/] tokens per epoch "
            f"instead of {e.layout['packed_computed_per_epoch']:,} (the data's {e.tokens_per_epoch:,} plus packing "
            f"padding)"
        )

    f = e.flops
    title = f"Compute: {f['total']:.3g} FLOPs"
    if f["reference"]:
        title += f" ({f['reference']:.2g} of them the DPO reference)"
    utilisation = {h["utilisation"] for h in e.hardware}.pop()
    compute = Table(
        "hardware",
        "peak",
        f"time at {utilisation:.0%} MFU",
        f"cost at ${e.gpu_hour_price:.2f}/GPU-h",
        title=title,
        title_justify="left",
    )
    for h in e.hardware:
        priced = h["usd"] is not None  # GPUs are priced per hour; this CPU is not
        peak = f"{h['peak_tflops']:,.0f} TFLOP/s" if priced else f"{h['peak_tflops'] * 1000:,.0f} GFLOP/s"
        cost = dollars(h["usd"]) if priced else "—"
        compute.add_row(f"{h['name']} ({h['basis']})", peak, human_time(h["hours"]), cost)
    console.print(compute)

    hosted = Table(
        "hosted model",
        "$ / 1M training tokens",
        "billed tokens",
        "cost",
        title=f"Hosted fine-tuning (prices last checked {e.hosted['last_checked']}{_age(e.hosted)}; "
        "the table is tunery/data/prices.py)",
        title_justify="left",
    )
    for p in e.hosted["prices"]:
        price = f"${p['usd_per_million_tokens']:.2f}"
        hosted.add_row(f"{p['provider']} {p['model']}", price, f"{p['billed_tokens']:,}", dollars(p["usd"]))
    console.print(hosted)
    console.print(f"[dim]{e.hosted['note']}[/]")
    console.print("[dim]assumptions:\n" + "\n".join(f"  • {a}" for a in e.assumptions) + "[/]")


def human_time(hours: float) -> str:
    seconds = hours * 3600
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def dollars(usd: float) -> str:
    return "< $0.01" if 0 < usd < 0.005 else f"${usd:,.2f}"


def _age(hosted: dict) -> str:
    months = hosted["months_since_checked"]
    return f", {months} months ago, so they may have changed" if months > 6 else ""
