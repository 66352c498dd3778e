"""Benchmark: tunery's SFT loop against TRL's SFTTrainer, LoRA on SmolLM2-135M, same work, same machine.

Each side trains in its own subprocess (so its peak RSS is its own) on the same synthetic chat data:
the same examples at every optimizer step, the same LoRA (r16, alpha 32, dropout 0, q/k/v/o/gate/
up/down), learning rate, clipping, threads and fp32 precision, and assistant-only loss on the same
tokens (checked token by token, and by the first step's loss). After `--warmup` steps, `--steps`
optimizer steps are timed the same way on both sides: from the end of one step to the end of the next.

    .venv/bin/python bench/train_throughput.py                       # 3 sides: ~6-8 min on 2 idle cores
    .venv/bin/python bench/train_throughput.py --steps 6 --repeats 3 # steadier: interleaved runs, medians
    .venv/bin/python bench/train_throughput.py --threads 1           # a shared, oversubscribed machine
    .venv/bin/python bench/train_throughput.py --tunery-variant share_prefix=false,micro_batch_tokens=1024

Sides:
  tunery       tunery.train.sft.train with its CPU defaults (fp32, no gradient checkpointing, LM head
               only at trained positions; packed rows, or a shared system prompt computed once).
  trl-default  SFTTrainer + peft with TRL's defaults (padded batches, gradient checkpointing on, fused
               LM head at every position), except fp32 instead of its default bf16 autocast.
  trl-padfree  SFTTrainer at its best honest CPU settings: padding_free=True (one flattened row per
               batch, per-example attention from position ids), gradient checkpointing off, fp32.
  trl-stock    (not run by default) trl-default with TRL's own precision default, bf16 autocast.
  tunery[...]  (with --tunery-variant) tunery with some RunConfig values overridden.

Reported per side: real tokens per second (the examples' tokens, no padding), the same per CPU-second,
peak RSS of the subprocess, and model FLOP/s as a share of this machine's fp32 matmul rate measured in
the same subprocess just before training. Model FLOPs of a step (padding and recomputation by
gradient checkpointing or TRL's fused-head backward are not counted):

    4 × P_linear × T       frozen base linears: forward 2·P·T + input gradient 2·P·T (no weight grad)
  + 6 × P_lora × T         LoRA matrices: forward, input gradient and weight gradient
  + 12 × L × D × A         attention scores and values, forward + backward, over the A causal
                           (query, key) pairs attended
  + 4 × V × d × H          LM head (tied embedding, frozen) at the H positions a side projects:
                           tunery the trained positions only, TRL every real position

T = non-pad positions the transformer runs (a shared prefix that tunery runs once counts once),
L = layers, D = attention width, V = vocabulary, d = hidden size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from sides import MetricsClock, child_main, machine, median_row, run_side, trl_step_clock, versions

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DEFAULT_SIDES = ["tunery", "trl-default", "trl-padfree"]
ALL_SIDES = [*DEFAULT_SIDES, "trl-stock"]
SYSTEM_PROMPT = "You are the support assistant of a small online bookshop. Answer accurately and politely."
SHORT_TOKENS, LONG_TOKENS = (40, 80), (300, 600)

# SmolLM2's chat template with `{% generation %}` markers around what tunery trains (assistant content
# and its <|im_end|>). TRL needs the markers for assistant_only_loss and refuses to patch this template
# itself; the child checks that it renders every example exactly like the stock template.
TRL_TRAINING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

WORDS = (
    "order book books shipping delivery refund return account password email invoice payment card address "
    "week days store customer price discount edition author title paperback hardcover gift voucher tracking "
    "number parcel courier warehouse stock available reprint library school please thanks could would should "
    "the a an and or but because when while after before since until with without from into about over under "
    "this that these those my your our their it they we you i he she is are was were be been have has had "
    "do does did can will may might must need want like know think see find check send receive arrive late "
    "early soon today tomorrow yesterday morning evening new old damaged missing wrong right same different "
    "first last next second copy copies page pages cover chapter series collection signed limited special"
).split()


# ---------------------------------------------------------------------------------------------- data


def sentence(rng: random.Random, n_words: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n_words)]
    return " ".join(words).capitalize() + rng.choice(".?.!.")


def paragraph(rng: random.Random, n_words: int) -> str:
    out, left = [], n_words
    while left > 0:
        n = min(left, rng.randint(6, 16))
        out.append(sentence(rng, n))
        left -= n
    return " ".join(out)


def candidate(rng: random.Random, long: bool) -> dict:
    """One conversation: a shared system prompt, then 1-3 user/assistant turns."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    turns = rng.choice([1, 1, 2, 3]) if long else rng.choice([1, 1, 1, 2])
    for _ in range(turns):
        if long:
            user, answer = rng.randint(40, 200) // turns, rng.randint(60, 220) // turns
        else:
            user, answer = rng.randint(4, 12) // turns, rng.randint(6, 22) // turns
        messages.append({"role": "user", "content": paragraph(rng, max(user, 2))})
        messages.append({"role": "assistant", "content": paragraph(rng, max(answer, 2))})
    return {"messages": messages}


def write_dataset(path: Path, n: int, model_dir: Path, seed: int) -> dict:
    """Write `n` chat examples, alternately short and long, each drawn until its length is in range.

    Returns token statistics measured with tunery's renderer (the same tokens both sides train on).
    """
    from tunery.data.formats import to_example
    from tunery.data.render import ChatTokenizer, render_chat

    tok = ChatTokenizer.from_dir(model_dir)
    rng = random.Random(seed)
    lengths, trained, multi_turn = [], [], 0
    with path.open("w") as fh:
        for i in range(n):
            long = i % 2 == 1
            low, high = LONG_TOKENS if long else SHORT_TOKENS
            while True:
                example = candidate(rng, long)
                rendered = render_chat(to_example(example), tok, None)
                if low <= len(rendered.input_ids) <= high:
                    break
            lengths.append(len(rendered.input_ids))
            trained.append(rendered.trained_tokens)
            multi_turn += len(example["messages"]) > 3
            fh.write(json.dumps(example) + "\n")
    return {
        "examples": n,
        "tokens": sum(lengths),
        "trained_share": sum(trained) / sum(lengths),
        "multi_turn_share": multi_turn / n,
        "short_mean": statistics.mean(lengths[0::2]),
        "long_mean": statistics.mean(lengths[1::2]) if n > 1 else 0.0,
        "longest": max(lengths),
    }


# ------------------------------------------------------------------------------------- FLOPs and rate


@dataclass
class StepWork:
    """What one optimizer step processed, counted the same way on both sides."""

    examples: int
    real_tokens: int  # the examples' tokens (no padding): what "tokens per second" counts on both sides
    backbone_tokens: int  # non-pad positions the transformer ran (fewer when a shared prefix runs once)
    computed_tokens: int  # positions the transformer ran, padding included
    trained_tokens: int  # loss targets
    head_positions: int  # positions projected through the LM head
    attention_pairs: int  # causal (query, key) pairs attended, for attention FLOPs
    wall_s: float  # wall clock from the end of the previous optimizer step to the end of this one
    cpu_s: float  # process CPU time (all threads) over the same interval


def model_shape(model_dir: Path) -> dict:
    """Parameter counts that the FLOP formula needs, from the model's config.json."""
    c = json.loads((model_dir / "config.json").read_text())
    d, layers, ffn, vocab = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["vocab_size"]
    head_dim = c.get("head_dim") or d // c["num_attention_heads"]
    q_width, kv_width = c["num_attention_heads"] * head_dim, c["num_key_value_heads"] * head_dim
    # (in, out) of each adapted projection in one layer
    shapes = {
        "q_proj": (d, q_width),
        "k_proj": (d, kv_width),
        "v_proj": (d, kv_width),
        "o_proj": (q_width, d),
        "gate_proj": (d, ffn),
        "up_proj": (d, ffn),
        "down_proj": (ffn, d),
    }
    return {
        "layers": layers,
        "hidden": d,
        "attention_width": q_width,
        "linear_params": layers * sum(i * o for i, o in shapes.values()),
        "head_params": vocab * d,
        "shapes": shapes,
    }


def lora_params(shape: dict, r: int) -> int:
    return shape["layers"] * sum(r * (i + o) for name, (i, o) in shape["shapes"].items() if name in LORA_TARGETS)


def step_flops(work: StepWork, shape: dict, r: int) -> float:
    """Model FLOPs of one optimizer step (see the module docstring for each term)."""
    t = work.backbone_tokens
    return (
        4 * shape["linear_params"] * t
        + 6 * lora_params(shape, r) * t
        + 12 * shape["layers"] * shape["attention_width"] * work.attention_pairs
        + 4 * shape["head_params"] * work.head_positions
    )


def matmul_rate(seconds: float = 0.6) -> float:
    """Best fp32 matmul FLOP/s over shapes like this model's (and one square), at the current threads."""
    import torch

    best = 0.0
    for m, k, n in ((4096, 576, 1536), (4096, 1536, 576), (2048, 576, 8192), (2048, 2048, 2048)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)  # warm-up
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            torch.mm(a, b)
            calls += 1
        best = max(best, 2 * m * k * n * calls / (time.perf_counter() - started))
    return best


# ------------------------------------------------------------------------------------- child: tunery


def tunery_config(spec: dict):
    from tunery.train.config import LoraConfig, RunConfig, merge

    total = spec["warmup"] + spec["steps"]
    config = RunConfig(
        model=spec["model_dir"],
        data=Path(spec["data"]),
        output=Path(spec["workdir"]) / "tunery-run",
        adapter="lora",
        lora=LoraConfig(r=spec["r"], alpha=spec["alpha"], dropout=0.0, target_modules=LORA_TARGETS),
        n_epochs=1,
        batch_size=spec["batch_size"],
        micro_batch_tokens=spec["micro_batch_tokens"],
        learning_rate=spec["learning_rate"],
        lr_scheduler="constant",
        warmup_ratio=0.0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_seq_len=spec["max_seq_len"],
        packing=True,
        seed=spec["seed"],
        max_steps=total,
        eval_every=total,
        save_every=total,  # the only checkpoint is written after the last timed step
        keep_checkpoints=1,
        device="cpu",
        precision="fp32",
        gradient_checkpointing=False,
        compile=False,
    )
    # --tunery-variant overrides, validated by the schema like any user's config
    return RunConfig.model_validate(merge(config.model_dump(), spec["tunery_overrides"]))


def run_tunery(spec: dict, side: str) -> dict:
    import torch

    from tunery.train.modeling import step_batches
    from tunery.train.rundir import RunDir
    from tunery.train.sft import train

    torch.set_num_threads(spec["threads"])
    rate = matmul_rate()
    config = tunery_config(spec)
    clock = MetricsClock(config.output / "metrics.jsonl")
    clock.start()
    run_dir = train(config)
    clock.done.set()
    clock.join()
    if torch.get_num_threads() != spec["threads"]:
        raise RuntimeError(f"tunery trained with {torch.get_num_threads()} threads, not {spec['threads']}")
    records = [r for r in RunDir(run_dir).read_metrics() if r["type"] == "train"]
    total = spec["warmup"] + spec["steps"]
    if len(records) != total or len(clock.ends) < total:
        raise RuntimeError(f"tunery logged {len(records)} steps, expected {total}")

    # Rebuild each step's micro-batches with the engine's own function to count their work; the
    # trained-token count must match what the loop itself logged.
    plan, pad_id, examples = tunery_plan(config, spec)
    steps, previous_wall, previous_cpu = [], 0.0, clock.ends[0][1]
    for step, record in enumerate(records):
        chosen = examples[step * spec["batch_size"] : (step + 1) * spec["batch_size"]]
        work = micro_batch_work(step_batches(chosen, plan, pad_id))
        # The loop logs the positions it took the loss on as loss_tokens ("tokens" is what OpenAI bills).
        if work["trained_tokens"] != record["loss_tokens"]:
            raise RuntimeError(
                f"step {step + 1}: counted {work['trained_tokens']} trained tokens, "
                f"tunery logged {record['loss_tokens']}"
            )
        cpu = clock.ends[step][1]
        steps.append(
            StepWork(
                examples=len(chosen),
                real_tokens=sum(len(e.input_ids) for e in chosen),
                **work,
                head_positions=work["trained_tokens"],
                wall_s=record["elapsed_s"] - previous_wall,
                cpu_s=cpu - previous_cpu if step else 0.0,  # step 1's start is not observed; it is a warm-up
            )
        )
        previous_wall, previous_cpu = record["elapsed_s"], cpu
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"matmul_flops": rate, "steps": [asdict(s) for s in steps], "losses": [r["train_loss"] for r in records]}


def tunery_plan(config, spec: dict):
    """The resolved plan, pad id and rendered examples in tunery's epoch-0 order.

    Every value in the config is explicit, so resolving it again gives the plan the run used. TRL
    gets its dataset in this same order with a sequential sampler, so at every step both sides
    train on exactly the same examples.
    """
    from tunery.data.formats import load_examples
    from tunery.data.render import ChatTokenizer, render_chat
    from tunery.train.modeling import epoch_order
    from tunery.train.plan import resolve

    tok = ChatTokenizer.from_dir(Path(spec["model_dir"]))
    rendered = [render_chat(e, tok, spec["max_seq_len"]) for e in load_examples(config.data)]
    plan = resolve(
        config,
        n_examples=len(rendered),
        longest=max(len(r.input_ids) for r in rendered),
        context_length=None,
        cuda_available=False,
        bf16_supported=False,
    )
    return plan, tok.pad_id, [rendered[i] for i in epoch_order(len(rendered), spec["seed"], 0)]


def micro_batch_work(batches: list[dict]) -> dict:
    """Positions computed, non-pad positions, trained tokens and attention pairs of a step's micro-batches.

    Handles both of tunery's layouts: packed rows (several examples per row, told apart by
    `segments`), and rows that continue a shared prefix computed once per micro-batch.
    """
    computed = backbone = trained = pairs = 0
    for batch in batches:
        prefix = batch["prefix_ids"].shape[1] if "prefix_ids" in batch else 0
        computed += batch["input_ids"].numel() + prefix
        backbone += int((batch["segments"] >= 0).sum()) + prefix
        trained += int(batch["loss_mask"][:, 1:].sum())
        pairs += prefix * (prefix + 1) // 2
        for row in batch["segments"].tolist():
            for segment in set(row) - {-1}:
                n = row.count(segment)
                pairs += n * prefix + n * (n + 1) // 2
    return {
        "backbone_tokens": backbone,
        "computed_tokens": computed,
        "trained_tokens": trained,
        "attention_pairs": pairs,
    }


# ---------------------------------------------------------------------------------------- child: TRL


class CountingCollator:
    """Wraps TRL's collator and records what each batch holds, in the order the trainer consumes them."""

    def __init__(self, inner):
        self.inner = inner
        self.batches: list[dict] = []

    def __call__(self, examples):
        batch = self.inner(examples)
        if "attention_mask" in batch:  # padded: one example per row
            lengths = batch["attention_mask"].sum(dim=1).tolist()
        else:  # padding-free: one flattened row, examples delimited by cu_seq_lens
            lengths = batch["cu_seq_lens_q"].diff().tolist()
        self.batches.append(
            {
                "examples": len(lengths),
                "real_tokens": int(sum(lengths)),
                "backbone_tokens": int(sum(lengths)),
                "computed_tokens": int(batch["input_ids"].numel()),
                "trained_tokens": int((batch["labels"][:, 1:] != -100).sum()),
                # On CPU, TRL's fused LM head projects every position (compact scoring needs Triton);
                # only the real ones are counted as model FLOPs
                "head_positions": int(sum(lengths)),
                "attention_pairs": int(sum(n * (n + 1) // 2 for n in lengths)),
            }
        )
        return batch


def check_same_targets(dataset, rows: list[dict], spec: dict, tokenizer) -> None:
    """TRL must train on exactly tunery's tokens: same ids, and labels exactly where tunery's mask is 1."""
    from tunery.data.formats import to_example
    from tunery.data.render import ChatTokenizer, render_chat

    stock = (Path(spec["model_dir"]) / "chat_template.jinja").read_text()
    tok = ChatTokenizer.from_dir(Path(spec["model_dir"]))
    for i, (example, row) in enumerate(zip(rows, dataset, strict=True)):
        a = tokenizer.apply_chat_template(example["messages"], chat_template=stock, tokenize=False)
        b = tokenizer.apply_chat_template(example["messages"], chat_template=TRL_TRAINING_TEMPLATE, tokenize=False)
        ours = render_chat(to_example(example), tok, spec["max_seq_len"])
        theirs = [int(label != -100) for label in row["labels"]]
        if a != b or list(row["input_ids"]) != ours.input_ids or theirs != ours.loss_mask:
            raise RuntimeError(f"example {i}: TRL's tokens or targets differ from tunery's")


def run_child(spec: dict, side: str) -> dict:
    return run_tunery(spec, side) if side.startswith("tunery") else run_trl(spec, side)


def run_trl(spec: dict, side: str) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from tunery.train.modeling import epoch_order

    torch.set_num_threads(spec["threads"])
    rate = matmul_rate()
    total = spec["warmup"] + spec["steps"]
    workdir = Path(spec["workdir"])
    template = workdir / "smollm2_training.jinja"
    template.write_text(TRL_TRAINING_TEMPLATE)
    padfree = side == "trl-padfree"
    args = SFTConfig(
        output_dir=str(workdir / "trl-out"),
        per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=1,
        max_steps=total,
        learning_rate=spec["learning_rate"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=spec["seed"],
        use_cpu=True,
        # TRL's own default is bf16 autocast (also on CPU); fp32 everywhere except the stock side
        bf16=side == "trl-stock",
        # TRL's default is True; the padding-free side runs like tunery's CPU default
        gradient_checkpointing=not padfree,
        padding_free=padfree,
        # padding_free without packing refuses max_length (it could not truncate); every example is
        # shorter than max_seq_len here, so no side ever truncates
        max_length=None if padfree else spec["max_seq_len"],
        assistant_only_loss=True,
        chat_template_path=str(template),
        model_init_kwargs={"dtype": torch.float32},
        # both sides see the same examples at every step (see step_batches)
        train_sampling_strategy="sequential",
        logging_steps=1,  # TRL's default is 10; per-step losses let the child check step 1 against tunery
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    lora = LoraConfig(
        r=spec["r"],
        lora_alpha=spec["alpha"],
        lora_dropout=0.0,
        target_modules=LORA_TARGETS,
        task_type="CAUSAL_LM",
        bias="none",
    )
    lines = Path(spec["data"]).read_text().splitlines()
    rows = [json.loads(lines[i]) for i in epoch_order(len(lines), spec["seed"], 0)]
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])

    clock = trl_step_clock()
    trainer = SFTTrainer(
        model=spec["model_dir"],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[clock],
    )
    check_same_targets(trainer.train_dataset, rows, spec, tokenizer)
    counting = CountingCollator(trainer.data_collator)
    trainer.data_collator = counting
    trainer.train()

    if len(clock.ends) != total or len(counting.batches) < total:
        raise RuntimeError(f"TRL ran {len(clock.ends)} steps from {len(counting.batches)} batches, expected {total}")
    starts = [clock.began, *clock.ends[:-1]]
    steps = [
        StepWork(**batch, wall_s=end[0] - start[0], cpu_s=end[1] - start[1])
        for batch, start, end in zip(counting.batches[:total], starts, clock.ends, strict=True)
    ]
    return {
        "matmul_flops": rate,
        "steps": [asdict(s) for s in steps],
        "losses": [float(log["loss"]) for log in clock.logs],
    }


# -------------------------------------------------------------------------------------------- parent


def summarise(side: str, result: dict, warmup: int, shape: dict, r: int) -> dict:
    timed = [StepWork(**s) for s in result["steps"][warmup:]]
    wall = sum(s.wall_s for s in timed)
    real = sum(s.real_tokens for s in timed)
    flops = sum(step_flops(s, shape, r) for s in timed)
    return {
        "side": side,
        "tokens_per_s": real / wall,
        "tokens_per_cpu_s": real / sum(s.cpu_s for s in timed),
        "trained_tokens_per_s": sum(s.trained_tokens for s in timed) / wall,
        "s_per_step": wall / len(timed),
        "padding": 1 - sum(s.backbone_tokens for s in timed) / sum(s.computed_tokens for s in timed),
        "peak_rss_mib": result["peak_rss_mib"],
        "flops_per_s": flops / wall,
        "matmul_flops": result["matmul_flops"],
        "load_average": result["load_average"],
        "first_loss": result["losses"][0],
        "process_s": result["process_s"],
    }


def with_flop_share(row: dict, machine_rate: float) -> dict:
    """A side's median row with its FLOP/s as a share of the machine's matmul rate.

    The rate is the best calibration of the whole benchmark: a calibration taken while another
    process held the core reads low, and would flatter the share of the side measured just then.
    """
    return {**row, "flop_share": row["flops_per_s"] / machine_rate, "machine_matmul_flops": machine_rate}


def markdown(rows: list[dict], args, data: dict, threads: int, command: str) -> str:
    lines = [
        f"Date {date.today().isoformat()}; {machine()}; {threads} threads; {versions()}.",
        "",
        f"Command: `{command}`",
        "",
        f"Data: {data['examples']} synthetic chats with one system prompt (half {SHORT_TOKENS[0]}-{SHORT_TOKENS[1]} "
        f"tokens, mean {data['short_mean']:.0f}; half {LONG_TOKENS[0]}-{LONG_TOKENS[1]}, mean "
        f"{data['long_mean']:.0f}; {100 * data['multi_turn_share']:.0f}% multi-turn; "
        f"{100 * data['trained_share']:.0f}% of tokens trained). "
        f"{args.batch_size} examples per optimizer step, the same examples at each step on every side; "
        f"{args.warmup} warm-up + {args.steps} timed steps; median of {args.repeats} run(s) per side.",
        "",
        "| side | real tok/s | real tok/CPU-s | s/step | padding | peak RSS MiB | FLOP/s share | step-1 loss "
        "| load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['side']} | {r['tokens_per_s']:.1f} | {r['tokens_per_cpu_s']:.1f} | {r['s_per_step']:.1f} | "
            f"{100 * r['padding']:.0f}% | {r['peak_rss_mib']:.0f} | {100 * r['flop_share']:.1f}% | "
            f"{r['first_loss']:.4f} | {r['load_average']:.1f} |"
        )
    ours = [r for r in rows if r["side"].startswith("tunery")]
    peers = [r for r in rows if not r["side"].startswith("tunery")]
    if ours and peers:
        lines.append("")
    for a in ours:
        for b in peers:
            lines.append(
                f"- {a['side']} vs {b['side']}: real tok/s {a['tokens_per_s'] / b['tokens_per_s']:.2f}× "
                f"(per CPU-second {a['tokens_per_cpu_s'] / b['tokens_per_cpu_s']:.2f}×; target ≥ 1.5×), "
                f"peak RSS {a['peak_rss_mib'] / b['peak_rss_mib']:.2f}× (target ≤ 0.8×), "
                f"FLOP/s share {a['flop_share'] / b['flop_share']:.2f}×."
            )
    losses = {r["side"]: r["first_loss"] for r in rows}
    if max(losses.values()) - min(losses.values()) > 1e-3 * abs(min(losses.values())):
        lines.append(f"\nWARNING: the step-1 losses differ ({losses}): the sides did not do the same work.")
    return "\n".join(lines)


def print_report(report: dict) -> None:
    runs, settings = report["runs"], argparse.Namespace(**report["settings"])
    machine_rate = max(r["matmul_flops"] for rows in runs.values() for r in rows)
    medians = [with_flop_share(median_row(rows), machine_rate) for rows in runs.values()]
    print()
    print(markdown(medians, settings, report["data"], settings.threads, settings.command))
    print(
        f"\nFLOP/s share: of {machine_rate / 1e9:.0f} GFLOP/s, the best fp32 matmul calibration of the run. "
        "Timings share the CPU with whatever else runs: compare the load average with the core count, "
        "and rerun on a quiet machine before quoting these numbers."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2, help="timed optimizer steps per side")
    parser.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps first")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per optimizer step (TRL's default)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side, interleaved; the median is reported")
    parser.add_argument("--sides", default=",".join(DEFAULT_SIDES), help=f"comma-separated, from {ALL_SIDES}")
    parser.add_argument("--max-seq-len", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads on every side (default: the physical cores, as tunery chooses); fewer pins each "
        "side to that many CPUs",
    )
    parser.add_argument(
        "--tunery-variant",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="also run tunery with these RunConfig overrides, as a side of its own named tunery[...], "
        "e.g. share_prefix=false,micro_batch_tokens=1024 (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="also write the settings and every run here")
    parser.add_argument("--report", type=Path, metavar="JSON", help="only print the tables of a saved --json")
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child[0], Path(args.child[1]), run_child)
    if args.report:
        print_report(json.loads(args.report.read_text()))
        return 0

    from tunery.hardware import physical_cores
    from tunery.models import resolve_model
    from tunery.train.config import parse_overrides

    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = sorted(set(sides) - set(ALL_SIDES))
    variants = {f"tunery[{v}]": parse_overrides(v.split(",")) for v in args.tunery_variant}
    sides += list(variants)
    if unknown or args.steps < 1 or args.warmup < 0 or args.repeats < 1 or args.batch_size < 1:
        parser.error(f"unknown sides {unknown}" if unknown else "--steps, --repeats, --batch-size ≥ 1; --warmup ≥ 0")
    model_dir = resolve_model("smollm2-135m-instruct")
    threads = args.threads or physical_cores()
    if not 1 <= threads <= len(os.sched_getaffinity(0)):
        parser.error(f"--threads must be between 1 and {len(os.sched_getaffinity(0))}")
    shape = model_shape(model_dir)
    command = "python bench/train_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])

    with tempfile.TemporaryDirectory(prefix="tunery-train-bench-") as tmp:
        workdir = Path(tmp)
        # tunery refuses files of fewer than 10 examples; steps past the timed ones are never run
        n_examples = max(10, args.batch_size * (args.warmup + args.steps))
        data = write_dataset(workdir / "train.jsonl", n_examples, model_dir, args.seed)
        if data["longest"] > args.max_seq_len:
            parser.error(f"--max-seq-len {args.max_seq_len} would truncate the longest example ({data['longest']})")
        print(
            f"{machine()}, {threads} threads, load average {os.getloadavg()[0]:.1f}\n"
            f"data: {n_examples} chats, short mean {data['short_mean']:.0f} tokens, long mean "
            f"{data['long_mean']:.0f}, {100 * data['trained_share']:.0f}% trained\n"
            f"each side: {args.warmup} warm-up + {args.steps} timed steps of {args.batch_size} examples, "
            f"{args.repeats} run(s)",
            flush=True,
        )
        spec = {
            "model_dir": str(model_dir),
            "data": str(workdir / "train.jsonl"),
            "threads": threads,
            "batch_size": args.batch_size,
            "warmup": args.warmup,
            "steps": args.steps,
            "max_seq_len": args.max_seq_len,
            "micro_batch_tokens": "auto",  # tunery's own choice (1024 on CPU since the first round; was 4096 here)
            "tunery_overrides": {},
            "learning_rate": 1e-4,
            "r": 16,
            "alpha": 32,
            "seed": args.seed,
        }
        runs: dict[str, list[dict]] = {s: [] for s in sides}
        for repeat in range(args.repeats):
            # alternate the order so that slow drifts in machine load hit every side alike
            for side in sides if repeat % 2 == 0 else reversed(sides):
                result = run_side(__file__, side, {**spec, "tunery_overrides": variants.get(side, {})}, workdir)
                row = summarise(side, result, args.warmup, shape, spec["r"])
                runs[side].append(row)
                print(
                    f"  {side} run {repeat + 1}: {row['tokens_per_s']:6.1f} real tok/s "
                    f"({row['tokens_per_cpu_s']:.1f} per CPU-s), step-1 loss {row['first_loss']:.4f}, "
                    f"{row['s_per_step']:5.1f} s/step, padding {100 * row['padding']:3.0f}%, "
                    f"peak RSS {row['peak_rss_mib']:5.0f} MiB, model {row['flops_per_s'] / 1e9:.1f} GFLOP/s "
                    f"(matmul {row['matmul_flops'] / 1e9:.0f}), load {row['load_average']:.1f}, "
                    f"{row['process_s']:.0f} s in all",
                    flush=True,
                )
    report = {"data": data, "settings": {**vars(args), "threads": threads, "command": command}, "runs": runs}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
