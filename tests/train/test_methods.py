"""The methods table (tunery/train/methods.py): every entry complete, and the only list of methods."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from tunery.data.formats import FORMATS
from tunery.serve.types.fine_tuning import MethodRequest
from tunery.train.config import RunConfig, flatten, merge, nested
from tunery.train.methods import ADAPTERS, BY_OPENAI_TYPE, METHODS, Method

PACKAGE = Path(__file__).resolve().parents[2] / "tunery"


@pytest.mark.parametrize("name", list(METHODS))
def test_every_entry_is_complete(name):
    method = METHODS[name]
    assert method.name == name
    for f in dataclasses.fields(Method):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name != "openai_type":
            assert getattr(method, f.name) not in (None, "", {}), f"{name}: {f.name} is empty"
    assert method.evals_per_run >= 1 and method.evals_reason
    if method.batch_size is not None:
        assert method.batch_size >= 1 and method.batch_size_reason
    for hook in ("recipe", "load_data"):
        if getattr(method, hook) is not None:
            assert callable(method.hook(hook)), f"{name}: {hook} names no function"
    if method.recipe is not None:
        assert method.config_section, f"{name}: a recipe resolves the method's own config block"
    assert set(method.base_lr) == set(ADAPTERS) and all(lr > 0 for lr in method.base_lr.values())
    assert set(method.flops_per_token) == set(ADAPTERS) and all(f >= 2 for f in method.flops_per_token.values())
    assert method.reference_flops_per_token >= 0
    assert method.data_format in FORMATS, f"{name}: no format {method.data_format!r} in tunery/data/formats.py"


@pytest.mark.parametrize("name", list(METHODS))
def test_the_loop_is_a_train_function(name):
    train = METHODS[name].load_loop()
    parameters = inspect.signature(train).parameters
    assert list(parameters)[:1] == ["config"] and parameters["resume_dir"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("name", list(METHODS))
def test_openai_names_and_config_keys_exist(name):
    method = METHODS[name]
    required = {key: "x.json" for key in method.required_settings}
    config = RunConfig.model_validate(merge({"data": "train.jsonl", "method": name}, _nested(required)))
    keys = flatten(config.model_dump(mode="json"))
    for key in [*method.required_settings, *method.input_files.values()]:
        assert key in keys, f"{name}: {key} is not a run-config key"
    if method.required_settings:
        with pytest.raises(ValueError, match=f"method={name} needs"):
            RunConfig(data=Path("train.jsonl"), method=name)
    if method.config_section:
        assert method.config_section in RunConfig.model_fields
    if method.openai_type is None:  # not offered through the fine-tuning API yet
        assert not method.openai_hyperparameters
        return
    assert BY_OPENAI_TYPE[method.openai_type] is method
    assert method.openai_type in typing.get_args(MethodRequest.model_fields["type"].annotation)
    block = MethodRequest(type=method.openai_type).block()
    for openai_name, key in method.openai_hyperparameters.items():
        assert openai_name in type(block.hyperparameters).model_fields, (
            f"OpenAI's {method.openai_type} has no {openai_name}"
        )
        assert key in keys, f"{name}: {key} is not a run-config key"


def _nested(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        out = merge(out, nested(key, value))
    return out


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_recipe_takes_the_base_rate_from_the_table(name, adapter):
    from tunery.train.plan import resolve

    required = _nested({key: "x.json" for key in METHODS[name].required_settings})
    config = RunConfig.model_validate(
        merge({"data": "train.jsonl", "method": name, "adapter": adapter, "learning_rate_multiplier": 2.0}, required)
    )
    plan = resolve(config, n_examples=100, longest=100, context_length=512, cuda_available=False, bf16_supported=False)
    assert plan.config.learning_rate == pytest.approx(2 * METHODS[name].base_lr[adapter])


def test_the_table_and_the_cli_need_no_torch():
    code = (
        "import sys; import tunery.train.methods, tunery.train.config; from tunery.cli import main\n"
        "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in METHODS:
        assert name in result.stdout


def test_no_other_module_lists_the_methods():
    """A comparison with, or a dict keyed by, a method's name belongs in the table, not beside it."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if (path.name == "methods.py" and path.parent.name == "train") or path.parent.name == "data":
            continue  # data/ names formats, and the RFT format shares its method's name
        for node in ast.walk(ast.parse(path.read_text())):
            constants = []
            if isinstance(node, ast.Compare):
                constants = [node.left, *node.comparators]
            elif isinstance(node, ast.Dict):
                constants = [k for k in node.keys if k is not None]
            if any(isinstance(c, ast.Constant) and c.value in METHODS for c in constants):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not found, f"methods listed outside tunery/train/methods.py: {found}"
