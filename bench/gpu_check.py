"""GPU check: tunery's training paths on one NVIDIA GPU, against the CPU path and against TRL.

Three parts, in one run of at most ~8 minutes on an H100/H200:

1. Same loss as the CPU. A tiny random Llama takes one SFT step on the same batch with the CPU path
   (fp32) and with each GPU path: fp32, bf16 autocast, packed rows (per-example attention from
   segment ids) and the shared-prefix layout (the prompt computed once, its KV cache reused). Each
   step-1 loss must match the CPU's: to 1e-4 relative in fp32, 2e-2 in bf16.
2. Throughput. Random-initialised Llama-shaped models of about 0.5B and 1.5B parameters, built from
   a config (no weights travel), take LoRA and full SFT steps through `tunery.train.sft.train`, and
   the same steps through TRL's SFTTrainer (padding-free, bf16, same LoRA, learning rate, batch and
   data). Reported: real tokens/s, MFU against the card's bf16 dense peak, peak GPU memory.
3. One DPO step (LoRA, the reference from the adapter-disabled base) on the 0.5B model.

    python bench/gpu_check.py                 # on the GPU machine
    python bench/gpu_check.py --dry-run       # the same code on the CPU, tiny models, in about a minute

The GPU machine has torch, transformers, peft and accelerate; tunery's other needs travel as wheels
(pydantic, pydantic-core, annotated-types, typing-inspection, gguf, trl, datasets, dill,
multiprocess) with PYTHONPATH pointing at the checkout. Results go to stdout and, with --json, to a
file.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# bf16 dense peak per card, TFLOP/s (NVIDIA's datasheets, without sparsity).
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0}
WORDS = (
    "order book shipping delivery refund account password email invoice payment card address week store "
    "customer price discount edition author title gift voucher tracking parcel courier warehouse stock "
    "the a and or but because when while after before with without from into about over under please thanks"
).split()
SYSTEM = "You are the support assistant of a small online bookshop. Answer accurately and politely."


@dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int = 49152


FULL_SHAPES = [
    Shape("llama-0.5b", hidden=1024, layers=24, intermediate=2816, heads=16, kv_heads=4),
    Shape("llama-1.5b", hidden=1536, layers=28, intermediate=8960, heads=12, kv_heads=2),
]
DRY_SHAPES = [Shape("tiny-b", 96, 2, 192, 4, 2, vocab=512)]
TINY = Shape("tiny", 64, 2, 128, 4, 2, vocab=512)


def build_model(shape: Shape, out: Path, seed: int = 0) -> Path:
    """A random Llama of `shape` with a byte-level BPE tokenizer and a ChatML template, saved to `out`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(shape.vocab, 500), special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([" ".join(WORDS), SYSTEM] * 50, trainer=trainer)
    tok.save(str(out / "tokenizer.json"))
    chatml = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
        "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<|im_start|>",
                "eos_token": "<|im_end|>",
                "pad_token": "<|im_end|>",
                "unk_token": "<|endoftext|>",
                "chat_template": chatml,
            }
        )
    )
    config = LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    return out


def write_chats(path: Path, n: int, words: tuple[int, int], seed: int = 0) -> Path:
    """`n` chats sharing one system prompt, each user turn and answer `words` words long."""
    rng = random.Random(seed)
    with path.open("w") as fh:
        for _ in range(n):
            user, answer = (" ".join(rng.choices(WORDS, k=rng.randint(*words))) for _ in range(2))
            messages = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": user},
                {"role": "assistant", "content": answer},
            ]
            fh.write(json.dumps({"messages": messages}) + "\n")
    return path


def write_pairs(path: Path, n: int, words: tuple[int, int], seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w") as fh:
        for _ in range(n):
            prompt, good, bad = (" ".join(rng.choices(WORDS, k=rng.randint(*words))) for _ in range(3))
            fh.write(
                json.dumps(
                    {
                        "input": {"messages": [{"role": "user", "content": prompt}]},
                        "preferred_output": [{"role": "assistant", "content": good}],
                        "non_preferred_output": [{"role": "assistant", "content": bad}],
                    }
                )
                + "\n"
            )
    return path


def tunery_run(model: Path, data: Path, out: Path, *, steps: int, device: str, precision: str, **overrides) -> dict:
    """Train through tunery's own entry point; return the step records and the wall time per step."""
    import torch

    from tunery.train.config import RunConfig
    from tunery.train.rundir import RunDir

    method = overrides.pop("method", "sft")
    config = RunConfig(
        model=str(model),
        data=data,
        output=out,
        method=method,
        n_epochs=1,
        max_steps=steps,
        eval_every=steps,
        save_every=steps,
        keep_checkpoints=1,
        final_eval=False,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        seed=0,
        device=device,
        precision=precision,
        compile=False,
        **overrides,
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if method == "dpo":
        from tunery.train.dpo import train
    else:
        from tunery.train.sft import train
    started = time.perf_counter()
    train(config)
    wall = time.perf_counter() - started
    records = [r for r in RunDir(out).read_metrics() if r["type"] == "train"]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return {"records": records, "wall_s": wall, "peak_gib": peak}


def check_losses(workdir: Path, device: str) -> list[dict]:
    """Step-1 losses of every GPU path against the CPU path on the same tiny model and batch."""
    model = build_model(TINY, workdir / "tiny")
    data = write_chats(workdir / "tiny.jsonl", 16, (20, 60))
    common = dict(adapter="full", batch_size=8, learning_rate=1e-4, max_seq_len=512, micro_batch_tokens=512)
    reference = tunery_run(model, data, workdir / "cpu", steps=1, device="cpu", precision="fp32", **common)
    cpu_loss = reference["records"][0]["train_loss"]
    paths = {
        "fp32": dict(precision="fp32"),
        "bf16 autocast": dict(precision="bf16"),
        "packed rows": dict(precision="fp32", share_prefix=False, packing=True),
        "shared prefix (KV cache)": dict(precision="fp32", share_prefix=True),
    }
    rows = []
    for name, settings in paths.items():
        settings = {**common, **settings}
        precision = settings.pop("precision")
        run = tunery_run(
            model, data, workdir / f"path-{len(rows)}", steps=1, device=device, precision=precision, **settings
        )
        loss = run["records"][0]["train_loss"]
        tolerance = 2e-2 if precision == "bf16" else 1e-4
        error = abs(loss - cpu_loss) / abs(cpu_loss)
        rows.append({"path": name, "loss": loss, "cpu_loss": cpu_loss, "rel_error": error, "ok": error <= tolerance})
    return rows


def model_flops_per_token(shape: Shape, adapter: str, seq: float, lora_params: int) -> float:
    """Training FLOPs per token: 6·P for trained weights, 4·P for frozen ones (forward + input gradient),
    plus causal attention (12·L·D·seq/2 forward + backward) and the LM head at every position."""
    attn = shape.hidden * (shape.hidden + 2 * shape.hidden * shape.kv_heads // shape.heads + shape.hidden)
    mlp = 3 * shape.hidden * shape.intermediate
    linear = shape.layers * (attn + mlp)
    head = shape.vocab * shape.hidden
    base = 6 * (linear + head) if adapter == "full" else 4 * (linear + head) + 6 * lora_params
    return base + 12 * shape.layers * shape.hidden * seq / 2


def peak_tflops(device: str) -> float | None:
    import torch

    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def trl_run(model: Path, data: Path, out: Path, *, steps: int, batch: int, device: str, adapter: str) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class Clock(TrainerCallback):
        def __init__(self):
            self.ends = []

        def on_step_end(self, args, state, control, **kwargs):
            if device == "cuda":
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

    rows = [json.loads(line) for line in data.read_text().splitlines()]
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        max_steps=steps,
        learning_rate=1e-4 if adapter == "lora" else 1e-5,
        lr_scheduler_type="constant",
        bf16=device == "cuda",
        use_cpu=device == "cpu",
        padding_free=True,
        max_length=None,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=1,
    )
    peft_config = (
        LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
        if adapter == "lora"
        else None
    )
    clock = Clock()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer = SFTTrainer(
        model=str(model),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(model),
        peft_config=peft_config,
        callbacks=[clock],
    )
    trainer.train()
    # from the end of step 1 to the end of the last: the first step pays for warm-up on both sides
    s_per_step = (clock.ends[-1] - clock.ends[0]) / (len(clock.ends) - 1)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return {"s_per_step": s_per_step, "peak_gib": peak}


def throughput(shapes: list[Shape], workdir: Path, device: str, steps: int, batch: int, words: tuple[int, int]):
    from tunery.data.render import ChatTokenizer

    precision = "bf16" if device == "cuda" else "fp32"
    peak = peak_tflops(device)
    rows = []
    for shape in shapes:
        model = build_model(shape, workdir / shape.name)
        data = write_chats(workdir / f"{shape.name}.jsonl", max(10, batch * steps), words)
        tok = ChatTokenizer.from_dir(model)
        chats = [json.loads(line)["messages"] for line in data.read_text().splitlines()]
        tokens_per_example = sum(tok.count(tok.apply_template(m)) for m in chats) / len(chats)
        for adapter in ("lora", "full"):
            lr = 1e-4 if adapter == "lora" else 1e-5
            ours = tunery_run(
                model,
                data,
                workdir / f"{shape.name}-{adapter}",
                steps=steps,
                device=device,
                precision=precision,
                adapter=adapter,
                batch_size=batch,
                learning_rate=lr,
                gradient_checkpointing=False,
            )
            # from the end of step 1 to the end of the last, as for TRL
            records = ours["records"]
            tok_s = (
                batch * tokens_per_example * (len(records) - 1) / (records[-1]["elapsed_s"] - records[0]["elapsed_s"])
            )
            lora_params = 16 * 2 * shape.hidden * 7 * shape.layers if adapter == "lora" else 0
            flops = model_flops_per_token(shape, adapter, tokens_per_example, lora_params) * tok_s
            theirs = trl_run(
                model,
                data,
                workdir / f"trl-{shape.name}-{adapter}",
                steps=steps,
                batch=batch,
                device=device,
                adapter=adapter,
            )
            trl_tok_s = batch * tokens_per_example / theirs["s_per_step"]
            rows.append(
                {
                    "model": shape.name,
                    "adapter": adapter,
                    "tunery_tok_s": tok_s,
                    "tunery_mfu": flops / (peak * 1e12) if peak else None,
                    "tunery_peak_gib": ours["peak_gib"],
                    "trl_tok_s": trl_tok_s,
                    "trl_peak_gib": theirs["peak_gib"],
                    "speedup": tok_s / trl_tok_s,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def dpo_step(shape: Shape, workdir: Path, device: str, words: tuple[int, int]) -> dict:
    model = build_model(shape, workdir / f"dpo-{shape.name}")
    data = write_pairs(workdir / "pairs.jsonl", 16, words)
    precision = "bf16" if device == "cuda" else "fp32"
    run = tunery_run(
        model,
        data,
        workdir / "dpo-run",
        steps=2,
        device=device,
        precision=precision,
        method="dpo",
        batch_size=8,
        learning_rate=1e-5,
        # plain DPO (no RPO term): policy = reference at step 1, so the loss is exactly log 2,
        # which checks the reference path on this device
        dpo={"nll_weight": 0.0},
    )
    first = run["records"][0]
    return {
        "model": shape.name,
        "step1_loss": first["train_loss"],
        "wall_s": run["wall_s"],
        "peak_gib": run["peak_gib"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="run everything on the CPU with tiny models")
    parser.add_argument(
        "--steps", type=int, help="optimizer steps per throughput side, at least 2 (the first is untimed)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device here; --dry-run runs the same checks on the CPU")
    device = "cpu" if args.dry_run else "cuda"
    shapes = DRY_SHAPES if args.dry_run else FULL_SHAPES
    steps = args.steps or (2 if args.dry_run else 6)
    if steps < 2:
        parser.error("--steps must be at least 2: the first step is not timed")
    batch, words = (4, (10, 30)) if args.dry_run else (16, (150, 400))
    card = torch.cuda.get_device_name() if device == "cuda" else "CPU (dry run)"
    print(f"device: {card}; torch {torch.__version__}", flush=True)
    report: dict = {"device": card, "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory(prefix="tunery-gpu-check-") as tmp:
        workdir = Path(tmp)
        report["losses"] = check_losses(workdir, device)
        for row in report["losses"]:
            print(
                f"  {row['path']:26} loss {row['loss']:.6f} vs CPU {row['cpu_loss']:.6f} "
                f"(rel. error {row['rel_error']:.1e}) {'ok' if row['ok'] else 'MISMATCH'}",
                flush=True,
            )
        report["throughput"] = throughput(shapes, workdir, device, steps, batch, words)
        report["dpo"] = dpo_step(shapes[0], workdir, device, words)
        print(json.dumps(report["dpo"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if all(r["ok"] for r in report["losses"]) else 1


if __name__ == "__main__":
    sys.exit(main())
