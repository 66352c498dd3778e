"""Model references (tunery/models.py) and `tunery models`, through the real CLI.

A tiny Llama is written as a real GGUF file in the test (tiny_gguf.py) and converted by the real
code path, in a throwaway $TUNERY_HOME. The embedded default is the real converted SmolLM2,
linked into that home so that listing never converts it again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from builders import CHATML, REPO, build_tiny_tokenizer
from tiny_gguf import CONTEXT, write_tiny_gguf

from tunery.models import DEFAULT_MODEL, MANIFEST

# The GGUF carries its own template; the neighbouring tokenizer files carry ChatML.
GGUF_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + ': ' + m['content'] + '<|im_end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant: ' }}{% endif %}"
)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """(tiny.gguf, its weights by Hugging Face name), in a directory that also holds another
    model's tokenizer and config.json, as a Hub repo with both formats does."""
    root = tmp_path_factory.mktemp("gguf")
    build_tiny_tokenizer(root, template=CHATML)
    (root / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 999}))
    weights = write_tiny_gguf(root / "tiny.gguf", root, chat_template=GGUF_TEMPLATE)
    return root / "tiny.gguf", weights


@pytest.fixture
def home(tmp_path, smollm2_dir) -> Path:
    """A fresh $TUNERY_HOME whose only model is the embedded default, already converted."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / DEFAULT_MODEL).symlink_to(smollm2_dir)
    return home


def tunery(home: Path, *args) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "tunery", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "TUNERY_HOME": str(home), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
        timeout=300,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def resolve_json(home: Path, ref) -> dict:
    result = tunery(home, "models", "resolve", ref, "--json")
    assert result.returncode == 0, result.stderr
    (info,) = json.loads(result.stdout)
    return info


def resolve_probe(home: Path, ref) -> dict:
    """Resolve in a fresh process; report the path and whether torch (needed to convert) loaded."""
    code = (
        "import json, sys; from tunery.models import resolve_model; "
        f"path = resolve_model({str(ref)!r}); "
        "print(json.dumps({'path': str(path), 'torch': 'torch' in sys.modules}))"
    )
    env = {**os.environ, "TUNERY_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def assert_converted(path: Path, weights: dict[str, np.ndarray]) -> None:
    """The directory is the GGUF's model: its weights (Q and K un-permuted), tokenizer, template."""
    from safetensors.numpy import load_file

    from tunery.data.render import ChatTokenizer

    assert (path / MANIFEST).is_file()
    stored = load_file(path / "model.safetensors")
    assert stored.keys() == weights.keys()
    for name, value in weights.items():
        np.testing.assert_array_equal(stored[name], value, err_msg=name)
    config = json.loads((path / "config.json").read_text())
    assert (config["hidden_size"], config["max_position_embeddings"]) == (16, CONTEXT)
    tok = ChatTokenizer.from_dir(path)
    assert tok.chat_template == GGUF_TEMPLATE
    assert tok.special_tokens["eos_token"] == "<|im_end|>"


def test_gguf_converts_once_then_resolves_from_the_cache(home, gguf):
    path, weights = gguf
    info = resolve_json(home, path)
    converted = Path(info["path"])
    assert converted.parent == home / "models" and converted.name.startswith("gguf-tiny-")
    assert_converted(converted, weights)
    assert (info["parameters"], info["context_length"], info["has_chat_template"]) == (11_088, CONTEXT, True)
    # 400 × 16 embedding (tied head) + 2 layers × (4 × 16·16 q/k/v/o at 16 and 8 wide: 256 + 128 + 128
    # + 256, 3 × 16·32 MLP, 2 × 16 norms) + 16 final norm
    assert 400 * 16 + 2 * (256 + 128 + 128 + 256 + 3 * 512 + 32) + 16 == 11_088

    manifest = converted / MANIFEST
    before = (manifest.stat().st_mtime_ns, (converted / "model.safetensors").stat().st_ino)
    again = resolve_probe(home, path)
    assert again == {"path": str(converted), "torch": False}  # read from the cache, nothing converted
    assert (manifest.stat().st_mtime_ns, (converted / "model.safetensors").stat().st_ino) == before
    assert not list(home.glob("models/.*tmp*"))


def test_an_interrupted_conversion_is_never_resolved_and_the_next_one_is_clean(home, gguf):
    path, weights = gguf
    # Convert for real, but SIGKILL the process at the moment it would publish the result: the
    # worst moment, with a complete temp directory (manifest included) on disk.
    killer = (
        "import os, signal, sys, types; import tunery.models as m; "
        "m.os = types.SimpleNamespace(**{**vars(os), 'replace': lambda *a: os.kill(os.getpid(), signal.SIGKILL)}); "
        f"m.resolve_model({str(path)!r})"
    )
    env = {**os.environ, "TUNERY_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run([sys.executable, "-c", killer], capture_output=True, env=env, timeout=300)
    assert killed.returncode == -9
    (left,) = (home / "models").glob(".gguf-tiny-*.tmp-*")
    assert (left / MANIFEST).is_file()
    target = home / "models" / left.name.split(".tmp-")[0].removeprefix(".")
    assert not target.exists()

    # What a non-atomic writer would leave: a model directory without its manifest.
    target.mkdir()
    shutil.copy(left / "config.json", target / "config.json")
    (target / "model.safetensors").write_bytes((left / "model.safetensors").read_bytes()[:100])

    listing = tunery(home, "models", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    assert [m["name"] for m in json.loads(listing.stdout)] == [DEFAULT_MODEL]

    info = resolve_json(home, path)
    assert info["path"] == str(target)
    assert_converted(target, weights)
    assert not list((home / "models").glob(".gguf-tiny-*"))  # the killed run's temp dir is gone


def test_models_list_shows_size_context_and_template(home, gguf):
    resolve_json(home, gguf[0])
    result = tunery(home, "models", "list")
    assert result.returncode == 0, result.stderr
    rows = {
        line.split()[1]: line for line in result.stdout.splitlines() if "gguf-tiny-" in line or DEFAULT_MODEL in line
    }
    tiny = next(line for name, line in rows.items() if name.startswith("gguf-tiny-"))
    assert "11.1K" in tiny and f" {CONTEXT} " in tiny and "yes" in tiny
    smol = rows[DEFAULT_MODEL]
    assert "134.5M" in smol and "8192" in smol and "yes" in smol
    listed = json.loads(tunery(home, "models", "list", "--json").stdout)
    assert {m["name"]: (m["context_length"], m["has_chat_template"]) for m in listed} == {
        DEFAULT_MODEL: (8192, True),
        Path(resolve_json(home, gguf[0])["path"]).name: (CONTEXT, True),
    }


def test_local_directory_resolves_to_itself(home, tiny_model_dir):
    from safetensors.numpy import load_file

    info = resolve_json(home, tiny_model_dir)
    assert info["path"] == str(tiny_model_dir.resolve())
    numel = sum(v.size for v in load_file(tiny_model_dir / "model.safetensors").values())
    assert (info["parameters"], info["context_length"], info["has_chat_template"]) == (numel, 512, True)
    assert [p.name for p in (home / "models").iterdir()] == [DEFAULT_MODEL]  # nothing copied or converted


@pytest.mark.real_model
def test_embedded_default_resolves_without_converting_again(smollm2_dir):
    home = Path(os.environ["TUNERY_HOME"])
    info = resolve_json(home, DEFAULT_MODEL)
    assert info["path"] == str(smollm2_dir)
    assert (info["parameters"], info["context_length"], info["has_chat_template"]) == (134_515_008, 8192, True)
    assert resolve_probe(home, DEFAULT_MODEL) == {"path": str(smollm2_dir), "torch": False}


def test_a_broken_gguf_fails_cleanly_and_leaves_nothing(home, gguf, tmp_path):
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("these are notes, not a model")
    result = tunery(home, "models", "resolve", not_gguf)
    assert result.returncode == 2 and "is not a GGUF file" in result.stderr

    cut = tmp_path / "cut.gguf"  # a download that stopped half-way
    data = gguf[0].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    result = tunery(home, "models", "resolve", cut)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: could not convert {cut}")
    assert [p.name for p in (home / "models").iterdir() if not p.name.endswith(".lock")] == [DEFAULT_MODEL]


def test_a_home_that_cannot_be_a_directory_is_a_clear_error(tmp_path):
    home = tmp_path / "home"
    home.write_text("a file where the home should be")
    result = tunery(home, "models", "list")
    assert result.returncode == 2
    assert f"cannot use {home} as tunery's home: it is a file, not a directory" in result.stderr
    assert "TUNERY_HOME" in result.stderr


@pytest.mark.parametrize(
    "ref, words",
    [
        ("someorg/some-model", ["Hugging Face Hub", "HF_HUB_OFFLINE", f"'{DEFAULT_MODEL}'"]),
        ("no-such-model", ["unknown model", f"'{DEFAULT_MODEL}'"]),
        ("{tmp}/missing.gguf", ["does not exist"]),
        ("{tmp}", ["holds no config.json"]),
    ],
    ids=["hub-id-offline", "unknown-name", "missing-gguf", "directory-without-config"],
)
def test_bad_references_fail_with_a_clear_message(home, tmp_path, ref, words):
    result = tunery(home, "models", "resolve", ref.replace("{tmp}", str(tmp_path)))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    for word in words:
        assert word in result.stderr
