"""Where the memory and the time of tunery's SFT step go: bench/train_throughput.py's LoRA run, accounted.

Runs tunery's own pieces (plan, model, `step_batches`, `TokenLoss`, the optimizer) on the same
synthetic chats, 8 per step, and reports for each of the first steps:

- the process's resident memory after each stage (imports, model, optimizer) and the peak of each
  phase of the step (each micro-batch's forward and backward, the optimizer step), from
  /proc/self/status (the peak is reset between phases through /proc/self/clear_refs);
- glibc's heap: the bytes in use against the bytes it holds (`mallinfo2`), so the gap between live
  tensors and resident memory shows, and what `malloc_trim` gives back;
- the tensors each micro-batch's forward saves for backward, per layer and per module, from
  autograd's saved-tensor hooks, each storage counted once and the frozen weights not at all.

    .venv/bin/python bench/train_step_anatomy.py                              # defaults, ~1 min
    .venv/bin/python bench/train_step_anatomy.py --set micro_batch_tokens=4096
    MALLOC_ARENA_MAX=2 .venv/bin/python bench/train_step_anatomy.py           # allocator settings: env

`--model DIR` runs on any converted model (the tests' tiny one, to try the script).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

MIB = 1024 * 1024


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


LIBC = ctypes.CDLL("libc.so.6")
LIBC.mallinfo2.restype = MallInfo2


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_mib() -> float:
    return status_kib("VmRSS") / 1024


def peak_mib() -> float:
    return status_kib("VmHWM") / 1024


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def heap() -> dict:
    """glibc's view: bytes handed out (brk heap + mmapped chunks) and bytes held free in its arenas."""
    info = LIBC.mallinfo2()
    return {"in_use_mib": (info.uordblks + info.hblkhd) / MIB, "free_held_mib": info.fordblks / MIB}


def allocator() -> str:
    preload = os.environ.get("LD_PRELOAD", "")
    if "jemalloc" in preload:
        return "jemalloc"
    if "tcmalloc" in preload:
        return "tcmalloc"
    knobs = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")]
    return "glibc" + (f" ({', '.join(knobs)})" if knobs else "")


class SavedTensors:
    """Bytes autograd saves for backward, by the innermost module running when each was saved."""

    def __init__(self, model):
        self.stack = ["(outside the model)"]
        self.seen: dict[int, tuple[int, str]] = {}
        self.weights = {p.untyped_storage().data_ptr() for p in model.parameters() if not p.requires_grad}
        self.handles = []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(lambda m, a, name=name: self.enter(name)))
            self.handles.append(module.register_forward_hook(lambda m, a, o: self.leave()))

    def enter(self, name: str) -> None:  # hooks return None: a value would replace the module's input/output
        self.stack.append(name)

    def leave(self) -> None:
        self.stack.pop()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def pack(self, tensor):
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in self.weights and key not in self.seen:
            self.seen[key] = (storage.nbytes(), self.stack[-1])
        return tensor

    def hooks(self):
        import torch

        self.seen = {}
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)

    def by_kind(self) -> dict[str, float]:
        """MiB per module kind, summed over layers: 'self_attn.q_proj.lora_A', 'mlp.act_fn', ..."""
        out: dict[str, float] = defaultdict(float)
        for nbytes, name in self.seen.values():
            kind = re.sub(r"^.*\.layers\.\d+\.", "", name)
            kind = re.sub(r"\.(default|base_layer)(?=\.|$)", "", kind)
            out[kind] += nbytes / MIB
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def by_layer(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for nbytes, name in self.seen.values():
            match = re.search(r"\.layers\.(\d+)\.", name)
            out[f"layer {match.group(1)}" if match else name] += nbytes / MIB
        return dict(out)


GEMMS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
ATTENTION = "scaled_dot_product"
HEAD = ("log_softmax", "nll_loss", "argmax", "cross_entropy")


def op_kind(name: str, shapes: list, rank: int) -> str:
    """The profile bucket of one operator call, from its name and its inputs' shapes."""
    if name in GEMMS:
        dims = [d for shape in shapes if shape for d in shape]
        return "LoRA GEMMs (a rank-sized dimension)" if rank in dims else "large GEMMs (frozen linears, LM head)"
    if ATTENTION in name:
        return "attention (SDPA kernels)"
    if name.startswith("autograd::") or re.search(r"Backward\d*$", name):
        return "autograd engine and backward nodes (outside their ops)"
    if any(h in name for h in HEAD):
        return "loss (log-softmax, NLL, argmax)"
    return "other tensor ops (norms, SiLU, RoPE, adds, copies, cat)"


def profile_step(loss_fn, optimizer_fn, rank: int) -> dict[str, float]:
    """Seconds of one optimizer step per bucket.

    Forward and backward run under the profiler: each operator's self time goes to its bucket, and
    the wall time no operator accounts for is overhead (Python, the autograd engine, dispatch). The
    optimizer step (clipping included) is timed on its own.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        started = time.perf_counter()
        loss_fn()
        loss_s = time.perf_counter() - started
    started = time.perf_counter()
    optimizer_fn()
    optimizer_s = time.perf_counter() - started
    buckets: dict[str, float] = defaultdict(float)
    for event in prof.key_averages(group_by_input_shape=True):
        buckets[op_kind(event.key, event.input_shapes, rank)] += event.self_cpu_time_total / 1e6
    out = dict(sorted(buckets.items(), key=lambda kv: -kv[1]))
    out["not in any operator (Python, autograd engine, dispatch)"] = loss_s - sum(buckets.values())
    out["optimizer step and clipping"] = optimizer_s
    out["step wall"] = loss_s + optimizer_s
    return out


def line(label: str, **values) -> None:
    text = ", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
    print(f"{label:<44} {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="RunConfig overrides")
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) after every micro-batch")
    parser.add_argument("--profile", action="store_true", help="also profile one more step (see above)")
    args = parser.parse_args(argv)

    line("start (python)", rss_mib=rss_mib())
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import peft  # noqa: F401  (imported by build_model; counted with the imports here)
    import transformers  # noqa: F401
    from train_throughput import tunery_config, tunery_plan, write_dataset

    from tunery.hardware import physical_cores
    from tunery.models import resolve_model
    from tunery.train.config import RunConfig, merge, parse_overrides
    from tunery.train.modeling import TokenLoss, build_model, build_optimizer, build_scheduler, step_batches
    from tunery.train.sft import count_targets, step_loss
    from tunery.train.steps import clip_and_check, optimizer_step

    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    line("imports (torch, transformers, peft)", rss_mib=rss_mib())
    print(f"allocator: {allocator()}; {threads} threads; load average {os.getloadavg()[0]:.1f}")

    model_dir = resolve_model("smollm2-135m-instruct")
    with tempfile.TemporaryDirectory(prefix="tunery-train-memory-") as tmp:
        data = Path(tmp) / "train.jsonl"
        write_dataset(data, max(10, args.batch_size * (args.steps + args.profile)), model_dir, seed=0)
        spec = {
            "model_dir": str(model_dir),
            "data": str(data),
            "workdir": tmp,
            "batch_size": args.batch_size,
            "warmup": 0,
            "steps": args.steps,
            "max_seq_len": 1024,
            "micro_batch_tokens": "auto",
            "tunery_overrides": {},
            "learning_rate": 1e-4,
            "r": 16,
            "alpha": 32,
            "seed": 0,
        }
        config = tunery_config(spec)
        config = RunConfig.model_validate(merge(config.model_dump(), parse_overrides(args.set)))
        plan, pad_id, examples = tunery_plan(config, spec)

        model = build_model(plan, model_dir)
        model.train()
        weights = sum(p.numel() * p.element_size() for p in model.parameters()) / MIB
        line("model + LoRA built", rss_mib=rss_mib(), weights_mib=weights)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = build_optimizer(model, plan)
        scheduler = build_scheduler(optimizer, plan)
        forward = TokenLoss(model)
        saved = SavedTensors(model)
        print(f"micro_batch_tokens {plan.config.micro_batch_tokens}, share_prefix {plan.config.share_prefix}")

        overall = 0.0
        for step in range(args.steps):
            chosen = examples[step * args.batch_size : (step + 1) * args.batch_size]
            batches = step_batches(chosen, plan, pad_id)
            n_targets = count_targets(batches)
            print(f"\nstep {step + 1}: {len(batches)} micro-batch(es), {n_targets} trained tokens")
            step_peak = 0.0
            for i, batch in enumerate(batches):
                shape = "x".join(map(str, batch["input_ids"].shape))
                reset_peak()
                started = time.perf_counter()
                with saved.hooks():
                    nll, _ = forward(batch)
                line(
                    f"  mb {i + 1} [{shape}] forward",
                    rss_mib=rss_mib(),
                    peak_mib=peak_mib(),
                    saved_mib=sum(b for b, _ in saved.seen.values()) / MIB,
                    s=time.perf_counter() - started,
                    **heap(),
                )
                step_peak = max(step_peak, peak_mib())
                if step == 0 and i == 0:
                    kinds = saved.by_kind()
                    layers = saved.by_layer()
                    per_layer = [v for k, v in layers.items() if k.startswith("layer ")]
                    print(
                        f"    saved for backward: {len(per_layer)} layers × {sum(per_layer) / max(len(per_layer), 1):.1f} "
                        f"MiB; outside the layers: "
                        + ", ".join(f"{k} {v:.1f}" for k, v in layers.items() if not k.startswith("layer "))
                    )
                    print(
                        "    per module kind (MiB, all layers): " + ", ".join(f"{k} {v:.1f}" for k, v in kinds.items())
                    )
                reset_peak()
                started = time.perf_counter()
                (nll / n_targets).backward()
                del nll
                line(
                    f"  mb {i + 1} backward",
                    rss_mib=rss_mib(),
                    peak_mib=peak_mib(),
                    s=time.perf_counter() - started,
                    **heap(),
                )
                step_peak = max(step_peak, peak_mib())
                if args.trim:
                    LIBC.malloc_trim(0)
            del batches
            reset_peak()
            clip_and_check(trainable, 1.0, plan, step)
            optimizer_step(optimizer, scheduler)
            line("  optimizer step", rss_mib=rss_mib(), peak_mib=peak_mib(), **heap())
            step_peak = max(step_peak, peak_mib())
            before = rss_mib()
            LIBC.malloc_trim(0)
            line("  after malloc_trim(0)", rss_mib=rss_mib(), returned_mib=before - rss_mib(), step_peak_mib=step_peak)
            overall = max(overall, step_peak)
        if args.profile:
            from train_throughput import StepWork, matmul_rate, micro_batch_work, model_shape, step_flops

            saved.remove()
            step = args.steps
            chosen = examples[step * args.batch_size : (step + 1) * args.batch_size]
            batches = step_batches(chosen, plan, pad_id)
            rate = matmul_rate()
            started = time.perf_counter()
            step_loss(forward, batches, plan, backward=True)
            plain_s = time.perf_counter() - started
            optimizer.zero_grad(set_to_none=True)
            split = profile_step(
                lambda: step_loss(forward, batches, plan, backward=True),
                lambda: (clip_and_check(trainable, 1.0, plan, step), optimizer_step(optimizer, scheduler)),
                plan.config.lora.r,
            )
            work = micro_batch_work(batches)
            flops = step_flops(
                StepWork(
                    examples=len(chosen),
                    real_tokens=sum(len(e.input_ids) for e in chosen),
                    **work,
                    head_positions=work["trained_tokens"],
                    wall_s=split["step wall"],
                    cpu_s=0.0,
                ),
                model_shape(model_dir),
                plan.config.lora.r,
            )
            wall = split["step wall"]
            print(
                f"\nprofiled step {step + 1}: {wall:.2f} s, model {flops / wall / 1e9:.1f} GFLOP/s = "
                f"{100 * flops / wall / rate:.1f}% of the fp32 matmul rate ({rate / 1e9:.0f} GFLOP/s)"
            )
            print(f"(forward and backward of the same micro-batches without the profiler: {plain_s:.2f} s)")
            print("| where | s | share of the step |\n|---|---:|---:|")
            for where, seconds in split.items():
                print(f"| {where} | {seconds:.2f} | {100 * seconds / wall:.1f}% |")
    line("\npeak over the steps", mib=overall)
    return 0


if __name__ == "__main__":
    sys.exit(main())
