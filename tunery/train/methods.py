"""The training methods tunery knows: one entry each, and the only place that lists them.

Adding a method is one loop file plus one entry here:

1. Write `tunery/train/<name>.py` with `train(config: RunConfig, *, resume_dir: Path | None = None)
   -> Path`: an explicit loop that calls `prepare`, `start_or_resume` and `finish_run`
   (tunery/train/prepare.py), as sft.py, dpo.py and rft.py do.
2. Add a `Method` to `METHODS` below. If the method has settings of its own, add their block to
   `RunConfig` (tunery/train/config.py) and name it in `config_section` (its `auto` values resolve in the
   function `recipe` names); if it trains on a new kind of example, add the format to
   tunery/data/formats.py and its rules to the data rules.

Everything else reads this table: `tunery train --method`, `RunConfig.method` and its required
settings, the `auto` recipe (tunery/train/plan.py: learning rate, batch size, evaluations), the data
check before a run (tunery/train/prepare.py), `tunery estimate` and `--dry-run`, `tunery runs
reproduce`, the printed plan, the model card, and the fine-tuning API (`method.type`, its
hyperparameters, the job's file check). tests/train/test_methods.py fails if an entry is incomplete
or if another module lists methods.

This module imports nothing heavy: `--help` and `tunery validate` read it without torch, so each
entry names its loop (and its hooks) by module path, imported only when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

ADAPTERS = ("lora", "full")


@dataclass(frozen=True)
class Method:
    """One training method. See the module docstring for where each field is read."""

    name: str  # `method:` in a run config and `tunery train --method`
    title: str  # in words, for model cards and help: "supervised fine-tuning (SFT)"
    loop: str  # module holding `train(config, *, resume_dir=None) -> Path`, imported only to run
    data_format: str  # the example type it trains on: a key of tunery/data/formats.py FORMATS
    base_lr: dict[str, float]  # the `auto` learning rate per adapter (before learning_rate_multiplier)
    lr_reason: str  # why those rates, printed with the resolved config
    # FLOPs per weight per token of the trained model, per adapter (estimate, dry run): forward 2,
    # input gradient 2, weight gradient 2 for trained weights only (LoRA's frozen base skips it).
    flops_per_token: dict[str, int]
    reference_flops_per_token: int  # a frozen reference's forward, per weight per token; 0 = none
    # OpenAI's `method.type` for this method; None while the fine-tuning API does not offer it.
    openai_type: str | None
    # OpenAI hyperparameter → run-config key, beyond n_epochs, batch_size and learning_rate_multiplier.
    openai_hyperparameters: dict[str, str] = field(default_factory=dict)
    config_section: str | None = None  # the RunConfig block holding this method's own settings
    required_settings: dict[str, str] = field(default_factory=dict)  # run-config key → what to give when unset
    input_files: dict[str, str] = field(default_factory=dict)  # role → run-config key of a file the run reads
    data_parallel: bool = False  # runs under `--nproc N` / torchrun with more than one process
    fsdp: bool = False  # shards the model over the processes with distributed.strategy=fsdp
    # The `auto` recipe's method-specific parts (tunery/train/plan.py):
    batch_size: int | None = None  # examples per step, instead of the n/40 rule
    batch_size_reason: str = ""
    evals_per_run: int = 10
    evals_reason: str = "about 10 validation passes per run"
    evals_per_run_cpu: int | None = None  # on a CPU, when it differs (a validation pass that generates is dear)
    evals_reason_cpu: str = ""
    # "module:function" resolving the autos of `config_section` (torch-free): f(config, why, device)
    recipe: str | None = None
    load_data: str | None = None  # "module:function" loading (train, validation) instead of the format rules
    early_stopping: bool = True  # its validation pass yields a loss that early stopping can watch
    final_eval: bool = True  # after training, `tunery eval` grades the model's answers on the validation set
    # Trains on chat examples, so the base model's own answers to general prompts can be mixed in
    # (`replay`, tunery/train/replay.py); pairs and rollouts have no place for them.
    replay: bool = False
    # Its loss goes through modeling.TokenLoss, where a frozen LM head (LoRA) runs in chunks of
    # positions, so the dry run charges one chunk's logits rather than all of them.
    head_in_chunks: bool = False

    def load_loop(self) -> Callable:
        """The method's `train` function (imports torch)."""
        return importlib.import_module(self.loop).train

    def hook(self, name: str) -> Callable | None:
        """The function a "module:function" field (`recipe`, `load_data`) names, imported now."""
        where = getattr(self, name)
        if where is None:
            return None
        module, _, function = where.partition(":")
        return getattr(importlib.import_module(module), function)


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method(
            name="sft",
            title="supervised fine-tuning (SFT)",
            loop="tunery.train.sft",
            data_format="chat",
            base_lr={"lora": 1e-3, "full": 2e-5},
            lr_reason="LoRA trains few weights from zero and takes a large step; full fine-tuning a small one",
            flops_per_token={"lora": 4, "full": 6},
            reference_flops_per_token=0,
            openai_type="supervised",
            data_parallel=True,
            fsdp=True,
            replay=True,
            head_in_chunks=True,
        ),
        Method(
            name="dpo",
            title="direct preference optimisation (DPO)",
            loop="tunery.train.dpo",
            data_format="preference",
            # LoRA 3e-4: with the NLL term on (dpo.nll_weight=1) this rate moved 40 of 40 held-out answers
            # on examples/signoff-prefs, where plain DPO at 1e-4 moved none (docs/dpo.md).
            base_lr={"lora": 3e-4, "full": 2e-6},
            lr_reason="below SFT's: preference gradients are large; LoRA's 3e-4 is the rate that changed the "
            "answers on the bundled preference task (with dpo.nll_weight=1)",
            flops_per_token={"lora": 4, "full": 6},
            reference_flops_per_token=2,  # one forward pass of the reference over both answers
            openai_type="dpo",
            openai_hyperparameters={"beta": "dpo.beta"},
            config_section="dpo",
            recipe="tunery.train.plan:resolve_dpo",  # no autos: prints why each default is what it is
            # Plain data parallel only: FSDP would have to shard the frozen reference too, and the
            # loop's forward (answer_logps) is not the FSDP root that sharding needs.
            data_parallel=True,
        ),
        Method(
            name="rft",
            title="reinforcement fine-tuning (RFT, as GRPO)",
            loop="tunery.train.rft",
            data_format="rft",
            # LoRA 1e-4, measured on examples/ticket-labels-rft (docs/rft.md): a step's gradient comes
            # from a few groups of 4 sampled answers, and Adam turns even so noisy an estimate into a
            # full-size step. At 1e-3 the answers stopped ending (held-out pass rate 0.24 -> 0.00);
            # at 5e-4 every message got the same label (-> 0.13); 1e-4 gained 0.24 -> 0.31 (paired
            # bootstrap 95 % CI +0.01..+0.14). Full fine-tuning 10× lower, the ratio Schulman &
            # Thinking Machines 2025 ("LoRA Without Regret") found for RL too.
            base_lr={"lora": 1e-4, "full": 1e-5},
            lr_reason="each step learns from a few groups of sampled answers: a larger rate collapsed them "
            "onto one answer on the bundled ticket-labels task (docs/rft.md)",
            # The trained step only; sampling the completions is not counted by `estimate` yet.
            flops_per_token={"lora": 4, "full": 6},
            reference_flops_per_token=0,  # the KL reference is off by default (rft.kl_coef = 0)
            openai_type="reinforcement",
            # compute_multiplier scales the completions per prompt; eval_interval is the steps between
            # held-out evaluations; eval_samples the held-out prompts each one grades (greedy).
            openai_hyperparameters={
                "compute_multiplier": "rft.compute_multiplier",
                "eval_interval": "eval_every",
                "eval_samples": "rft.eval_samples",
            },
            config_section="rft",
            required_settings={"rft.grader": "a grader: --grader grader.json (or rft.grader=...)"},
            input_files={"grader": "rft.grader"},
            batch_size=4,
            batch_size_reason="4 prompts per step: rollouts (prompts x group size) are most of a step's cost",
            evals_per_run=4,
            evals_reason="about 4 held-out evaluations per run (each generates)",
            evals_per_run_cpu=1,
            evals_reason_cpu="on a CPU, the held-out prompts are answered by the base (step 0) and the final model "
            "only: each greedy pass costs several training steps",
            recipe="tunery.train.plan:resolve_rft",
            load_data="tunery.train.rft:load_data",  # prompts checked against the grader's {{item.x}} fields
            early_stopping=False,  # its held-out check is a reward, not a loss
            final_eval=False,  # the loop grades its held-out set itself
        ),
    )
}

# OpenAI's `method.type` → the method, for the fine-tuning API.
BY_OPENAI_TYPE: dict[str, Method] = {m.openai_type: m for m in METHODS.values() if m.openai_type}


def either(names) -> str:
    """`["sft", "dpo", "rft"]` → "sft, dpo or rft", for messages."""
    names = list(names)
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


def data_parallel_names() -> str:
    """The methods that train in several processes, for messages: "sft or dpo"."""
    return either(m.name for m in METHODS.values() if m.data_parallel)


def fsdp_names() -> str:
    """The methods that shard the model with distributed.strategy=fsdp, for messages: "sft"."""
    return either(m.name for m in METHODS.values() if m.fsdp)


def method_for_format(data_format: str) -> Method | None:
    """The first method that trains on `data_format`, for hints like "use --method dpo"."""
    return next((m for m in METHODS.values() if m.data_format == data_format), None)
