"""Typed run configs: what to train, how, and on what hardware.

A `RunConfig` may hold `"auto"` for many fields. `tunery.train.plan` turns every `"auto"` into a
concrete value (and a reason), and the resolved config is printed and saved with the run, so a
run is always reproducible from its `config.yaml`. Validation rejects unknown keys and bad values
and never rewrites what the user wrote.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunery.data.rules import SpecialTokens
from tunery.errors import TuneryError
from tunery.models import DEFAULT_MODEL
from tunery.train.methods import ADAPTERS, METHODS, either, fsdp_names

Auto = Literal["auto"]
MethodName = Literal[tuple(METHODS)]  # the names in tunery/train/methods.py
AdapterName = Literal[ADAPTERS]
# Other tools take `--method lora`; here LoRA is an adapter of any method.
ADAPTERS_NOT_METHODS = ("lora", "qlora")
METHOD_IS_NOT_AN_ADAPTER = f"LoRA is an adapter: --adapter lora (the default); --method is {either(METHODS)}"


def names(what: Literal["model", "file", "run"], *keywords: str) -> dict:
    """`json_schema_extra` of a setting whose value names a model, a file or a run directory.

    Such a setting reads from (or writes to) the filesystem, so the job API never passes a
    caller's value through: it accepts only a reference the caller owns and puts the server's
    own path in its place (`tunery.serve.references`). `keywords` are values that name nothing.
    """
    return {"names": what, "keywords": list(keywords)}


# Upper bounds of the settings that size a run. Each is far past anything this tool can train (ten
# to a hundred times a real run), but finite: a typo or a hostile job is refused at once, naming the
# range, instead of planning a run that never ends, filling the disk with checkpoints or asking for
# terabytes of memory. Rates and loss weights stay open: a diverging rate only fails the caller's
# own run, and the NaN guard's tests set one on purpose.
LIMITS = {
    "n_epochs": 10_000,  # the job API's own bound; long test jobs use 1,000
    "batch_size": 65_536,  # the job API's own bound
    "micro_batch_tokens": 16_777_216,  # 2^24 padded tokens in one forward pass
    "max_seq_len": 1_048_576,  # 2^20 tokens, past the context of the open models tunery trains
    "eval_every": 10_000_000,  # steps: about four months at a step a second
    "save_every": 10_000_000,
    "max_steps": 10_000_000,
    "keep_checkpoints": 1_000,  # each is a whole adapter or model on disk
    "seed": 2**32 - 1,  # numpy's seeds are 32-bit
    "lora.r": 4_096,  # the width of most models: a higher rank is no longer low-rank
    "lora.alpha": 65_536,
    "rft.group_size": 1_024,  # completions sampled per prompt
    "rft.max_new_tokens": 131_072,
    "rft.eval_samples": 100_000,  # the job API's own bound
    "rft.grader_workers": 256,  # graders running at once (threads, sandboxes)
}


# The share of replay examples: at least one in a hundred, at most one per two of the user's.
REPLAY_MIN, REPLAY_MAX = 0.01, 0.5


def whole_number(key: str, value, *, low: int = 1, auto: bool = True):
    """`value` unless it is "auto" or None; else a whole number from `low` to `LIMITS[key]`.

    Raises:
        ValueError: naming the key and its range.
    """
    if value == "auto" or value is None:
        return value
    either = "'auto' or " if auto else ""
    if isinstance(value, bool) or value < low or value > LIMITS[key]:
        if low == 1 and not isinstance(value, bool) and value < 1:  # the words every "0" has been told
            raise ValueError(f"{key} must be a positive integer{' or ' + repr('auto') if auto else ''}, got {value!r}")
        raise ValueError(f"{key} must be {either}a whole number from {low} to {LIMITS[key]:,}, got {value!r}")
    return value


class _Strict(BaseModel):
    # NaN and infinity (YAML's .nan, JSON's NaN) pass every `gt`/`le` check and would train to NaN.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class LoraConfig(_Strict):
    """Low-rank adapters (Hu et al. 2021) through peft."""

    r: int | Auto = Field("auto", description="adapter rank; auto = 16")
    alpha: int | Auto = Field("auto", description="scaling numerator (scale = alpha / r); auto = 2 × r")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the adapter input")
    target_modules: Auto | list[str] = Field(
        "auto", description="module names to adapt; auto = every linear layer except the LM head"
    )
    use_dora: bool = Field(
        False,
        description="DoRA (Liu et al. 2024): learn each weight's magnitude apart from its direction; "
        "closer to full fine-tuning at low rank, for about 1.5-2x the adapter's step time",
    )
    use_rslora: bool = Field(
        False,
        description="rank-stabilised LoRA (Kalajdzievski 2023): scale by alpha/sqrt(r) instead of alpha/r, "
        "so that high ranks (64+) keep learning instead of stalling",
    )

    @model_validator(mode="after")
    def _positive(self):
        for name in ("r", "alpha"):
            whole_number(f"lora.{name}", getattr(self, name))
        return self


class DpoConfig(_Strict):
    """Direct preference optimisation (Rafailov et al. 2023) and its variants."""

    beta: float = Field(
        0.1, gt=0.0, le=100.0, description="strength of the pull towards the reference (OpenAI's `beta`)"
    )
    loss: Literal["sigmoid", "ipo", "simpo"] = Field("sigmoid", description="which preference loss")
    reference: str = Field(
        "auto",
        description="auto = the model training starts from (adapter disabled for LoRA, a frozen copy for full; "
        "with --model RUN_DIR that is the earlier run's model); "
        "none = reference-free (simpo); or a path to a model directory",
        json_schema_extra=names("model", "auto", "none"),
    )
    simpo_gamma: float = Field(0.5, ge=0.0, description="SimPO target reward margin γ")
    cache_reference: bool = Field(True, description="precompute reference log-probs once, cached on disk")
    nll_weight: float = Field(
        1.0,
        ge=0.0,
        description="weight of the chosen answer's per-token NLL added to the loss (RPO); 0 = plain DPO",
    )

    @model_validator(mode="after")
    def _reference_fits_the_loss(self):
        # Checked here, before any work: the run would otherwise fail after loading the model.
        if self.loss in ("sigmoid", "ipo") and self.reference == "none":
            raise ValueError(f"dpo.loss={self.loss} needs a reference model; use dpo.loss=simpo or leave dpo.reference")
        return self


class RftConfig(_Strict):
    """Reinforcement fine-tuning as GRPO (Shao et al. 2024), scored by an OpenAI grader object."""

    grader: Path | None = Field(
        None,
        description="grader JSON (OpenAI's grader object); required for method=rft",
        json_schema_extra=names("file"),
    )
    group_size: int | Auto = Field("auto", description="completions sampled per prompt (G); auto = 8 (4 on a CPU)")
    max_new_tokens: int | Auto = Field("auto", description="longest completion sampled; auto = 128 (32 on a CPU)")
    temperature: float | Auto = Field("auto", description="sampling temperature of the rollouts; auto = 1.0")
    kl_coef: float | Auto = Field("auto", description="weight of the KL term to the base model; auto = 0 (off)")
    scale_rewards: bool = Field(
        False, description="divide advantages by the group's reward std (original GRPO); off as in Dr. GRPO"
    )
    compute_multiplier: float | None = Field(
        None, gt=0.0, le=100.0, description="OpenAI's field: scales the completions sampled per prompt (group_size)"
    )
    eval_samples: int | Auto = Field("auto", description="held-out prompts graded (greedy) at each eval; auto = 100")
    pass_threshold: float | None = Field(
        None, description="reward at which an answer counts as a pass; default the grader's top score"
    )
    grader_workers: int = Field(8, description="answers graded at once (python and model graders)")

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("group_size", "max_new_tokens", "eval_samples"):
            whole_number(f"rft.{name}", getattr(self, name))
        whole_number("rft.grader_workers", self.grader_workers, auto=False)
        if self.group_size != "auto" and self.group_size < 2:
            raise ValueError("rft.group_size must be at least 2: advantages compare completions of one prompt")
        if self.temperature != "auto" and self.temperature <= 0:
            raise ValueError(f"rft.temperature must be positive (sampling), got {self.temperature}")
        if self.kl_coef != "auto" and self.kl_coef < 0:
            raise ValueError(f"rft.kl_coef must be 0 or more, got {self.kl_coef}")
        if self.compute_multiplier is not None and self.group_size != "auto":
            raise ValueError("set rft.group_size or rft.compute_multiplier, not both")
        return self


class TrackingConfig(_Strict):
    """Where `report_to` trackers file the run (OpenAI's wandb integration maps onto these)."""

    project: str = Field("tunery", min_length=1, description="W&B project, MLflow experiment")
    name: str | None = Field(None, description="the tracker's run name; default the run directory's name")
    mlflow_uri: str | None = Field(
        None,
        description="MLflow tracking URI; default MLflow's own (MLFLOW_TRACKING_URI, else ./mlflow.db)",
        json_schema_extra=names("run"),  # a file: or sqlite: URI writes where it points
    )
    wandb_entity: str | None = Field(None, description="W&B team or user")
    wandb_tags: list[str] = Field(default_factory=list, description="W&B run tags")


class DistributedConfig(_Strict):
    """How several processes (`--nproc N`, torchrun) share a run."""

    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="ddp = each process holds the whole model and the gradients are summed; "
        "fsdp = weights, gradients and optimizer state sharded over the processes (FSDP2), "
        "for full fine-tunes of models too big for one device; needs adapter=full, method=sft and 2+ processes",
    )


class RunConfig(_Strict):
    """Everything a training run needs. Fields left at "auto" are resolved by `tunery.train.plan`."""

    model: str = Field(
        DEFAULT_MODEL,
        description="hub id, local directory, .gguf file, or embedded name",
        json_schema_extra=names("model"),
    )
    data: Path = Field(description="training JSONL (chat or preference format)", json_schema_extra=names("file"))
    validation: Path | None = Field(
        None, description="held-out JSONL for validation metrics", json_schema_extra=names("file")
    )
    output: Path | None = Field(
        None, description="run directory; default runs/<method>-<time>", json_schema_extra=names("run")
    )

    method: MethodName = Field("sft", description="training method: a name in tunery/train/methods.py")
    adapter: AdapterName = Field("lora", description="train LoRA adapters, or every weight")
    lora: LoraConfig = Field(default_factory=LoraConfig)
    dpo: DpoConfig = Field(default_factory=DpoConfig)
    rft: RftConfig = Field(default_factory=RftConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list,
        description="experiment trackers that get every metric, the config and the reports (optional extras)",
    )
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    n_epochs: int | Auto = Field("auto", description="passes over the data; auto = OpenAI's rule")
    batch_size: int | Auto = Field("auto", description="examples per optimizer step")
    micro_batch_tokens: int | Auto = Field("auto", description="padded tokens per forward pass")
    learning_rate: float | Auto = Field("auto", description="peak learning rate")
    learning_rate_multiplier: float | None = Field(
        None, gt=0.0, description="OpenAI's field: multiplies the per-method base learning rate"
    )
    lr_scheduler: Literal["linear", "cosine", "constant"] = Field(
        "cosine", description="learning-rate decay after warmup"
    )
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0, description="share of steps spent warming up")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW's decoupled weight decay")
    max_grad_norm: float | None = Field(1.0, gt=0.0, description="clip the global gradient norm; null = off")
    max_seq_len: int | Auto = Field("auto", description="longer examples are truncated")
    special_tokens: SpecialTokens = Field(
        "warn",
        description="a chat template's special token inside message text (<|im_end|>) can forge a turn: "
        "warn = train it as the token and report special_tokens_in_content; refuse = the data check fails; "
        "escape = tokenise message text as plain text, so it is never a turn marker",
    )
    packing: bool = Field(True, description="pack examples into rows with per-example attention")
    share_prefix: bool = Field(
        True, description="when a step's examples share a long prompt prefix (a system prompt), compute it once"
    )
    seed: int = Field(0, description="seeds the data order, the initialisation and dropout")
    max_steps: int | None = Field(None, description="stop after this many steps (smoke runs)")

    eval_every: int | Auto = Field("auto", description="steps between validation passes")
    save_every: int | Auto = Field("auto", description="steps between checkpoints")
    keep_checkpoints: int = Field(2, description="how many recent checkpoints to keep")
    card_examples: int = Field(
        0,
        ge=0,
        le=20,
        description="training examples (and the system prompt) quoted in the model card; 0 = statistics only",
    )
    select: Literal["last", "best", "auto"] = Field(
        "last",
        description="which checkpoint becomes final/: last = the last step; best = every checkpoint scored on "
        "the validation set (loss, and the task's grader where answers are short), the best one kept; "
        "auto = best when there is a validation file, else last",
    )
    replay: float | Literal["auto", "none"] = Field(
        "auto",
        description="against forgetting, mix the base model's own answers to general prompts (tunery's replay "
        "set, apart from the forgetting measure's) into training, as a fraction of the examples per epoch, "
        f"from {REPLAY_MIN} to {REPLAY_MAX}; none = off; auto = none until replay is measured to pay (SFT only)",
    )
    early_stopping: int | Literal["auto", "off"] = Field(
        "auto",
        description="stop when the validation loss has not fallen for this many validation passes (patience), "
        "and make the step with the lowest validation loss final/; auto = on with a validation file "
        "(SFT, DPO), else off",
    )
    early_stopping_min_delta: float = Field(
        0.0, ge=0.0, description="how much lower than the best a validation loss must be to count as improving"
    )
    final_eval: bool = Field(
        True, description="after training, generate answers for the validation set and grade them (RUN_DIR/eval/)"
    )

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when there is one")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto = bf16 autocast on CUDA and on CPUs with native bf16, fp32 elsewhere"
    )
    gradient_checkpointing: bool | Auto = Field(
        "auto", description="recompute activations in backward to save memory; auto = on CUDA from 2048 tokens"
    )
    compile: bool | Auto = Field("auto", description="torch.compile the model; auto = off on short runs")

    @field_validator("method", mode="before")
    @classmethod
    def _method_not_adapter(cls, value):
        if isinstance(value, str) and value.lower() in ADAPTERS_NOT_METHODS:
            raise ValueError(METHOD_IS_NOT_AN_ADAPTER)
        return value

    @field_validator("replay", mode="before")
    @classmethod
    def _replay_fraction(cls, value):
        if value in ("auto", "none"):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not REPLAY_MIN <= value <= REPLAY_MAX:
            raise ValueError(
                f"replay must be 'auto', 'none' or a fraction from {REPLAY_MIN} to {REPLAY_MAX}, got {value!r}"
            )
        return float(value)

    @field_validator("early_stopping", mode="before")
    @classmethod
    def _early_stopping_words(cls, value):
        # YAML reads a bare `off` (the config file, or early_stopping=off on the command line) as false.
        if value is False:
            return "off"
        if value is True:
            raise ValueError("early_stopping takes auto, off or a patience in validation passes (e.g. 3)")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        for name in ("n_epochs", "batch_size", "micro_batch_tokens", "max_seq_len", "eval_every", "save_every"):
            whole_number(name, getattr(self, name))
        for name in ("max_steps", "keep_checkpoints"):
            whole_number(name, getattr(self, name), auto=False)
        whole_number("seed", self.seed, low=0, auto=False)
        if self.learning_rate != "auto" and self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive or 'auto', got {self.learning_rate}")
        if self.learning_rate != "auto" and self.learning_rate_multiplier is not None:
            raise ValueError("set learning_rate or learning_rate_multiplier, not both")
        if self.distributed.strategy == "fsdp" and not METHODS[self.method].fsdp:
            raise ValueError(
                f"distributed.strategy=fsdp shards --method {fsdp_names()} only; method={self.method} runs "
                "data-parallel with distributed.strategy=ddp (the default), each process holding the whole model"
            )
        if self.distributed.strategy == "fsdp" and self.adapter != "full":
            raise ValueError("distributed.strategy=fsdp shards full fine-tuning only; set adapter=full (LoRA uses ddp)")
        flat = flatten(self.model_dump())
        for key, what in METHODS[self.method].required_settings.items():
            if flat.get(key) is None:
                raise ValueError(f"method={self.method} needs {what}")
        if len(set(self.report_to)) != len(self.report_to):
            raise ValueError(f"report_to names a tracker twice: {self.report_to}")
        if self.select == "best" and self.validation is None:
            raise ValueError(
                "select=best scores the checkpoints on the validation set; give validation (or select=last)"
            )
        if self.replay not in ("auto", "none") and not METHODS[self.method].replay:
            raise ValueError(
                f"replay mixes chat examples into SFT; method={self.method} trains on "
                f"{METHODS[self.method].data_format} data: leave replay at auto or set it to none"
            )
        if isinstance(self.early_stopping, int):
            if self.early_stopping < 1:
                raise ValueError(f"early_stopping must be auto, off or a positive patience, got {self.early_stopping}")
            if not METHODS[self.method].early_stopping:
                raise ValueError(f"method={self.method} has no validation loss to stop on; set early_stopping=off")
            if self.validation is None:
                raise ValueError(
                    f"early_stopping={self.early_stopping} watches the validation loss; "
                    "give validation (a held-out JSONL), or set early_stopping=off"
                )
        if self.dpo.loss == "simpo" and self.dpo.reference not in ("auto", "none"):
            raise ValueError("dpo.loss=simpo is reference-free; leave dpo.reference at auto or none")
        return self

    def unresolved(self) -> list[str]:
        """Names of the fields still set to "auto"."""
        flat = flatten(self.model_dump(mode="json"))
        return [
            k
            for k, v in flat.items()
            if v == "auto" and k not in ("model", "dpo.reference") and k.split(".")[0] not in self.other_sections()
        ]

    def other_sections(self) -> set[str]:
        """The blocks of settings that belong to other methods than this run's (e.g. `dpo` for SFT)."""
        return {m.config_section for m in METHODS.values() if m.config_section} - {METHODS[self.method].config_section}


def naming_settings(model: type[BaseModel] = RunConfig, prefix: str = "") -> dict[str, dict]:
    """Every setting whose value names a model, a file or a run: dotted key → `names(...)`."""
    found: dict[str, dict] = {}
    for key, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.update(naming_settings(annotation, f"{prefix}{key}."))
        elif isinstance(info.json_schema_extra, dict) and "names" in info.json_schema_extra:
            found[f"{prefix}{key}"] = info.json_schema_extra
    return found


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`["n_epochs=1", "lora.r=8"]` → nested dict, values parsed as YAML scalars."""

    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise TuneryError(f"override {pair!r} is not key=value", hint="for example: n_epochs=1 lora.r=8")
        result = merge(result, nested(key.strip(), _scalar(raw)))
    return result


def nested(key: str, value: Any) -> dict[str, Any]:
    """`("lora.r", 8)` → `{"lora": {"r": 8}}`."""
    *parents, leaf = key.split(".")
    result: dict[str, Any] = {leaf: value}
    for part in reversed(parents):
        result = {part: result}
    return result


def _scalar(raw: str) -> Any:
    """A YAML scalar, except that `2e-4` is a number (YAML 1.1 reads it as a string)."""
    import yaml

    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | Path | None = None, overrides: dict | None = None, *, source: str = "") -> RunConfig:
    """Build a RunConfig from an optional YAML file plus overrides.

    Raises:
        TuneryError: unreadable YAML, unknown keys or bad values, each named with what is allowed.
    """
    import yaml

    data: dict = {}
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise TuneryError(f"cannot read config {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise TuneryError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise TuneryError(f"{path} must hold a mapping of config keys")
        # Relative data paths in a config file are relative to the file, not the shell.
        for key in {key for m in METHODS.values() for key in m.input_files.values()}:  # e.g. rft.grader
            section, name = key.split(".")
            block = data.get(section)
            if isinstance(block, dict) and isinstance(block.get(name), str) and not Path(block[name]).is_absolute():
                block[name] = os.path.normpath(path.parent / block[name])
        for key in ("data", "validation"):
            if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
                data[key] = os.path.normpath(path.parent / data[key])
        source = source or str(path)
    data = merge(data, overrides or {})
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise TuneryError(describe_errors(exc, source or "config")) from None


def config_keys(model: type[BaseModel] = None, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Every config key as (key, type, default, help), read from the schema: `tunery train --keys`."""
    model = model or RunConfig
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            rows.extend(config_keys(field.annotation, f"{key}."))
            continue
        default = "required" if field.is_required() else _shown(field.get_default(call_default_factory=True))
        rows.append((key, _type_name(field.annotation), default, field.description or ""))
    return rows


def _type_name(annotation) -> str:
    """`int | Literal["auto"]` → "int | auto"; `Literal["a", "b"]` → "a|b"; `Path | None` → "path | null"."""
    import types
    import typing

    if typing.get_origin(annotation) is Literal:
        return "|".join(str(v) for v in typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if typing.get_origin(annotation) is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    return {Path: "path"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _shown(value) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def closest_key(key: str) -> str | None:
    """The config key most like a mistyped one, e.g. `n_epoch` → `n_epochs`, `lora.rank` → `lora.r`."""
    import difflib

    keys = [row[0] for row in config_keys()]
    leaves = {k.rsplit(".", 1)[-1]: k for k in keys}
    match = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if not match:  # a nested key given without its section, or the other way round
        leaf = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(leaves), n=1, cutoff=0.75)
        match = [leaves[leaf[0]]] if leaf else []
    return match[0] if match else None


def describe_errors(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid run config"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("int", "float", "literal", "list")))
        if err["type"] == "extra_forbidden":
            guess = closest_key(key)
            hint = f"did you mean {guess}? " if guess else ""
            lines.append(f"  {key}: unknown key ({hint}`tunery train --keys` lists every key)")
        elif err["type"] == "missing":
            lines.append(f"  {key}: required")
        elif err["type"] == "value_error":  # a validator's own words, which name the value
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {key}: {message}" if key and key not in message else f"  {message}")
        else:
            lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
    # pydantic reports one line per union member; keep each message once.
    return "\n".join(dict.fromkeys(lines))


def dump_config(config: RunConfig) -> str:
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
