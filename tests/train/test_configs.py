"""Every shipped config validates against the schema, and the schema rejects bad values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunery.errors import TuneryError
from tunery.train.config import RunConfig, load_config, parse_overrides
from tunery.train.plan import auto_batch_size, resolve

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_are_shipped_configs():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_matches_the_schema(path):
    config = load_config(path)
    assert config.data.is_file(), f"{path.name} points at missing data {config.data}"
    if config.validation:
        assert config.validation.is_file()


def test_overrides_parse_as_yaml_scalars_and_nest():
    assert parse_overrides(["n_epochs=1", "lora.r=8", "learning_rate=2e-4", "packing=false", "max_grad_norm=null"]) == {
        "n_epochs": 1,
        "lora": {"r": 8},
        "learning_rate": 2e-4,
        "packing": False,
        "max_grad_norm": None,
    }


def test_learning_rate_and_multiplier_are_exclusive():
    with pytest.raises(TuneryError, match="not both"):
        load_config(None, {"data": "x.jsonl", "learning_rate": 1e-4, "learning_rate_multiplier": 2})


def test_unknown_nested_key_is_named():
    with pytest.raises(TuneryError, match="lora.rank: unknown key"):
        load_config(None, {"data": "x.jsonl", "lora": {"rank": 8}})


def _resolve(**kw):
    defaults = dict(n_examples=300, longest=100, context_length=8192, cuda_available=False, bf16_supported=False)
    config = kw.pop("config", RunConfig(data="x.jsonl"))
    return resolve(config, **{**defaults, **kw})


def test_auto_recipe_on_cpu():
    plan = _resolve()
    c = plan.config
    assert (c.device, c.precision, c.gradient_checkpointing, c.compile) == ("cpu", "fp32", False, False)
    assert (c.n_epochs, c.batch_size, c.learning_rate, c.max_seq_len) == (3, 8, 1e-3, 128)
    assert (c.lora.r, c.lora.alpha) == (16, 32) and "down_proj" in c.lora.target_modules
    assert plan.steps_per_epoch == 38 and plan.total_steps == 114 and plan.warmup_steps == 6
    assert c.unresolved() == []
    assert "OpenAI" in plan.reasons["n_epochs"]


def test_auto_recipe_on_a_bf16_gpu_with_long_sequences():
    c = _resolve(cuda_available=True, bf16_supported=True, longest=3000).config
    assert (c.device, c.precision, c.gradient_checkpointing, c.max_seq_len) == ("cuda", "bf16", True, 3008)
    assert _resolve(longest=30_000).config.max_seq_len == 8192  # never past the model's context


def test_user_values_are_kept_and_multiplier_scales_the_base():
    c = _resolve(config=RunConfig(data="x.jsonl", batch_size=3, learning_rate_multiplier=0.5, adapter="full")).config
    assert c.batch_size == 3 and c.learning_rate == pytest.approx(1e-5)


@pytest.mark.parametrize("n, expected", [(10, 4), (300, 8), (1000, 32), (100_000, 32)])
def test_auto_batch_size(n, expected):
    assert auto_batch_size(n) == expected


def test_cpu_threads_follow_omp_num_threads_per_process(monkeypatch):
    from tunery.hardware import cpu_threads, physical_cores

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads() == 3
    assert cpu_threads(processes=2) == 3  # OpenMP's value is per process already
    for unset in ("", "0", "many"):
        monkeypatch.setenv("OMP_NUM_THREADS", unset)
        assert cpu_threads() == physical_cores()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu_threads(processes=physical_cores() + 1) == 1  # never below one thread


def test_bf16_by_default_only_where_the_cpu_has_it_natively():
    native = _resolve(bf16_supported=True)
    assert native.config.precision == "bf16" and "native bf16" in native.reasons["precision"]
    emulated = _resolve(bf16_supported=False)
    assert emulated.config.precision == "fp32" and "no native bf16" in emulated.reasons["precision"]
    assert _resolve(bf16_supported=True, config=RunConfig(data="x.jsonl", precision="fp32")).config.precision == "fp32"


def test_native_bf16_is_read_from_the_cpu_flags():
    from tunery.hardware import cpu_flags, cpu_native_bf16

    assert cpu_native_bf16({"avx2", "avx512f", "avx512_bf16"})
    assert cpu_native_bf16({"avx2", "amx_bf16", "amx_tile"})
    assert not cpu_native_bf16({"avx2", "avx512f", "avx512bw", "avx512vl"})  # bf16 emulated: slower
    assert cpu_flags(Path("/nonexistent/cpuinfo")) is None


def test_importing_tunery_makes_openmp_wait_passively_unless_the_user_chose(tmp_path):
    import subprocess
    import sys

    probe = "import tunery, os; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"
