"""Every fenced code block of README.md and docs/*.md runs, so the docs cannot rot.

The convention (also in docs/contributing.md), by the tag after the opening fence:

- ``bash``: run with ``bash -euo pipefail``; must exit 0.
- ``python``: run with this Python; must exit 0.
- ``json``: each line, or else the whole block, must parse as JSON.
- ``yaml``: must parse as YAML.
- ``text``: not run (sample output, or a synopsis such as ``tunery validate FILE [--json]``).

A block without a tag fails. A block that cannot run here (a server that runs until stopped, a
package install, GPUs, a second machine) is preceded by ``<!-- docs-test: skip: REASON -->``.

The blocks of one page run in order in one scratch directory holding a copy of ``examples/`` (each
JSONL file cut to its first lines) and ``configs/``. ``tunery`` is this checkout's CLI, the
default model name resolves to a tiny random model (so training takes seconds), and
``http://127.0.0.1:8000`` is a real ``tunery serve`` on a free port, with the same tiny model,
started for the pages that use it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from builders import REPO, build_tiny_model, stop_process

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(`{3,})([^`\s]*)\s*$")
SKIP = re.compile(r"^<!--\s*docs-test:\s*skip:\s*(?P<reason>.+?)\s*-->\s*$")
RUN = {"bash", "python"}
PARSE = {"json", "yaml"}
QUIET = {"text"}
DEFAULT_SERVER = "127.0.0.1:8000"
EXAMPLE_LINES = 20  # the scratch copy's JSONL files are cut to these many lines: seconds, not minutes
BLOCK_TIMEOUT_S = 300


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the reason, when the block is marked not to run

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def read_blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page; a longer fence may hold shorter ones (shown, not run)."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), None)
        assert end is not None, f"{page.relative_to(REPO)}:{i + 1}: the code block is never closed"
        before = lines[i - 1] if i else ""
        skip = SKIP.match(before)
        found.append(Block(page, i + 1, lang, "\n".join(lines[i + 1 : end]) + "\n", skip and skip["reason"]))
        i = end + 1
    return found


def test_parser_reads_tags_skips_and_nested_fences(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "intro\n<!-- docs-test: skip: runs until stopped -->\n```bash\ntunery serve\n```\n\n"
        "````text\n```bash\nnot a block\n```\n````\n```\nuntagged\n```\n"
    )
    blocks = read_blocks(page)
    assert [(b.line, b.lang, b.skip) for b in blocks] == [
        (3, "bash", "runs until stopped"),
        (7, "text", None),
        (12, "", None),
    ]
    assert blocks[1].code == "```bash\nnot a block\n```\n"


@pytest.fixture(scope="session")
def docs_home(tmp_path_factory) -> Path:
    """A TUNERY_HOME where the default model's name resolves to a tiny random model."""
    from tunery.models import DEFAULT_MODEL, MANIFEST

    home = tmp_path_factory.mktemp("docs-home")
    model = build_tiny_model(home / "models" / DEFAULT_MODEL)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 4096}))  # few-shot prompts
    weights = hashlib.sha256((model / "model.safetensors").read_bytes()).hexdigest()
    (model / MANIFEST).write_text(
        json.dumps({"source": "a tiny random model for the docs test", "weights_sha256": weights})
    )
    return home


@pytest.fixture(scope="session")
def docs_env(docs_home, tmp_path_factory) -> dict[str, str]:
    bin_dir = tmp_path_factory.mktemp("docs-bin")
    shim = bin_dir / "tunery"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tunery "$@"\n')
    shim.chmod(0o755)
    return {
        **os.environ,
        "TUNERY_HOME": str(docs_home),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "COLUMNS": "100",
        # One thread per process: on a busy machine, OpenMP threads spinning against each other
        # made the tiny model's run 30x slower.
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture(scope="session")
def docs_server(docs_env, tmp_path_factory):
    """A real `tunery serve` with the tiny model; yields its host:port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = tmp_path_factory.mktemp("docs-server")
    log = (home / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunery", "serve", "--home", str(home), "--port", str(port)],
        env=docs_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"tunery serve exited: {(home / 'serve.log').read_text()[-3000:]}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "tunery serve did not start listening in 120 s"
            time.sleep(0.3)
    yield f"127.0.0.1:{port}"
    stop_process(proc)
    log.close()


def scratch_copy(root: Path) -> Path:
    """examples/ (JSONL cut short) and configs/, as a user's checkout would have them."""
    shutil.copytree(REPO / "configs", root / "configs")
    for src in (REPO / "examples").rglob("*"):
        dst = root / src.relative_to(REPO)
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
        elif src.suffix == ".jsonl":
            with src.open() as fh:
                dst.write_text("".join(itertools.islice(fh, EXAMPLE_LINES)))
        else:
            shutil.copy2(src, dst)
    return root


def check_parses(block: Block) -> None:
    if block.lang == "yaml":
        yaml.safe_load(block.code)
        return
    try:
        json.loads(block.code)
    except json.JSONDecodeError:
        for n, line in enumerate(block.code.splitlines(), block.line + 1):
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError as exc:
                    pytest.fail(f"{block.page.relative_to(REPO)}:{n}: not JSON ({exc}), nor is the whole block")


def run_block(block: Block, cwd: Path, env: dict[str, str], server: str | None) -> None:
    code = block.code if server is None else block.code.replace(DEFAULT_SERVER, server)
    argv = ["bash", "-euo", "pipefail", "-c", code] if block.lang == "bash" else [sys.executable, "-c", code]
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: the {block.lang} block ran over {BLOCK_TIMEOUT_S} s:\n{block.code}")
    if done.returncode != 0:
        pytest.fail(
            f"{block.where}: the {block.lang} block exited {done.returncode}:\n{block.code}\n"
            f"--- stdout (end)\n{done.stdout[-3000:]}\n--- stderr (end)\n{done.stderr[-3000:]}"
        )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_code_block_runs(page: Path, tmp_path, docs_env, request):
    blocks = read_blocks(page)
    untagged = [b.where for b in blocks if b.lang not in RUN | PARSE | QUIET]
    assert not untagged, f"code blocks need one of the tags {sorted(RUN | PARSE | QUIET)}: {untagged}"
    runnable = [b for b in blocks if b.lang in RUN and b.skip is None]
    needs_server = any(DEFAULT_SERVER in b.code for b in runnable)
    server = request.getfixturevalue("docs_server") if needs_server else None
    cwd = scratch_copy(tmp_path / "checkout")
    for block in blocks:
        if block.skip is not None or block.lang in QUIET:
            continue
        if block.lang in PARSE:
            check_parses(block)
        else:
            run_block(block, cwd, docs_env, server)
