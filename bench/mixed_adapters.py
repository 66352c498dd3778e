"""Benchmark: what a batch mixing LoRA adapters costs per decoding step, peft's way and stacked.

One process, the real base model, random LoRA adapters (r 8 on every linear layer, as the serving
benchmark trains), one batch of `--batch` chat prompts, greedy. Per way of running the batch, the
time of a prefill (1 new token) and of a prefill plus `--steps` tokens; their difference over
`--steps` is the time of one decoding step. Ways:

- `base`: the plain model, no peft wrapper (a server that never loaded an adapter);
- `peft N`: a PeftModel with N adapters, rows assigned round-robin, `generate(adapter_names=...)`;
- `stacked N`: the same rows through `tunery.serve.stacked_lora` (what `tunery serve` runs).

    .venv/bin/python bench/mixed_adapters.py                 # batch 8, adapters 1, 2 and 8
    .venv/bin/python bench/mixed_adapters.py --batch 4 --adapters 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def timed(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--adapters", type=int, nargs="+", default=[1, 2, 8])
    parser.add_argument("--steps", type=int, default=16, help="decoding steps timed after the prefill")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunery.models import resolve_model
    from tunery.serve.stacked_lora import StackedLora

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(args.model)).eval()
    prompt = torch.randint(3, model.config.vocab_size, (args.batch, 40))

    def run(model, new_tokens, context=None, **options):
        def go():
            with torch.inference_mode():
                model.generate(
                    input_ids=prompt,
                    attention_mask=torch.ones_like(prompt),
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,
                    do_sample=False,
                    pad_token_id=0,
                    **options,
                )

        def wrapped():
            if context is None:
                return go()
            with context():
                return go()

        return wrapped

    def measure(label, model, context=None, **options):
        run(model, 2, context, **options)()  # warm-up
        prefill = timed(run(model, 1, context, **options), args.repeats)
        full = timed(run(model, args.steps + 1, context, **options), args.repeats)
        step = (full - prefill) / args.steps
        rows.append((label, prefill, step))
        print(f"{label}: prefill {1000 * prefill:.1f} ms, decoding step {1000 * step:.1f} ms", flush=True)

    rows: list[tuple[str, float, float]] = []
    measure("base", model)
    peft_model = None
    for index in range(max(args.adapters)):
        config = LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, init_lora_weights=False)
        if peft_model is None:
            peft_model = get_peft_model(model, config, adapter_name="adapter0")
        else:
            peft_model.add_adapter(f"adapter{index}", config)
    peft_model.eval()
    stacked = StackedLora()
    for n in args.adapters:
        names = [f"adapter{i % n}" for i in range(args.batch)]
        measure(f"peft {n}", peft_model, adapter_names=names)
        measure(f"stacked {n}", peft_model, context=lambda names=names: stacked.rows(peft_model, names))

    base_step = rows[0][2]
    print(
        f"\n{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {args.threads} threads, batch {args.batch}, "
        f"prompt 40 tokens, {args.steps} steps, median of {args.repeats}\n"
    )
    print("| way | prefill ms | decoding step ms | step × base |")
    print("|---|---:|---:|---:|")
    for label, prefill, step in rows:
        print(f"| {label} | {1000 * prefill:.1f} | {1000 * step:.1f} | {step / base_step:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
