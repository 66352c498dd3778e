"""Which weights a model name means for an organisation: a base, or an adapter on a base.

Base models come from the server settings (served name → reference). Fine-tuned models and
checkpoints come from the store, scoped to the organisation that trained them. A LoRA model is
served on the base its adapter records, so every adapter of a base shares one loaded copy.
Forwarded models (settings.upstreams) are answered by another server; see `upstream`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from tunery.data.render import ChatTokenizer
from tunery.errors import TuneryError
from tunery.serve.errors import APIError, not_found
from tunery.serve.forwarding import Upstream
from tunery.serve.settings import ServerSettings
from tunery.store import Store


def _resolve_elsewhere(ref: str) -> Path:
    """`resolve_model` in a child process that exits when done. Converting an embedded model on a
    fresh home loads it whole (over a GiB with its libraries), which the API process would keep for
    its lifetime although it may never serve that model (a file report needs only its tokenizer)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tunery.models import resolve_model

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(resolve_model, ref).result()


@dataclass(frozen=True)
class ServedModel:
    name: str
    base_dir: Path  # the weights loaded as the shared base
    adapter_dir: Path | None  # a LoRA adapter applied on top, if any
    context_length: int


class Catalog:
    def __init__(self, settings: ServerSettings, store: Store):
        self.settings = settings
        self.store = store
        self._lock = threading.Lock()
        self._resolved: dict[str, Path] = {}
        self._tokenizers: dict[Path, ChatTokenizer] = {}

    def base_dir(self, name: str) -> Path:
        """Resolve a configured base model (converting an embedded one on first use)."""
        with self._lock:
            if name not in self._resolved:
                try:
                    self._resolved[name] = _resolve_elsewhere(self.settings.models[name]).resolve()
                except TuneryError as exc:
                    raise APIError(500, f"base model {name!r} cannot be loaded: {exc}", type="server_error") from None
            return self._resolved[name]

    def lookup(self, name: str, org: str) -> ServedModel:
        """Raises APIError 404 for a name this organisation cannot use."""
        if name in self.settings.models:
            base = self.base_dir(name)
            return ServedModel(name, base, None, _context_length(base))
        record = self.store.get_model(name, org)
        if record is None:
            raise not_found("model", name, param="model", code="model_not_found")
        path = Path(record.path)
        if not path.is_dir():
            raise APIError(500, f"the files of model {name} are missing from the server", type="server_error")
        if record.kind == "full":
            return ServedModel(name, path.resolve(), None, _context_length(path))
        base = _adapter_base(path) or self.base_dir(record.base)
        return ServedModel(name, base, path.resolve(), _context_length(base))

    def upstream(self, name: str, org: str) -> Upstream | None:
        """Where `name` is forwarded to, or None when this server answers it itself.

        A forwarded `ft:` name is a fine-tuned model: only the organisation that trained it (as
        the store records) may use it, and others get the 404 an unknown model gets. Other
        forwarded names are shared by every organisation, like base models.

        Raises:
            APIError: 404 for another organisation's forwarded fine-tuned model.
        """
        upstream = self.settings.upstreams.get(name)
        if upstream is not None and name.startswith("ft:") and self.store.get_model(name, org) is None:
            raise not_found("model", name, param="model", code="model_not_found")
        return upstream

    def tokenizer(self, model_dir: Path) -> ChatTokenizer:
        with self._lock:
            if model_dir not in self._tokenizers:
                # A caller's message text is text, as at OpenAI: a special token written in it
                # (`<|im_end|>`) is tokenised as plain characters, never as a turn marker.
                self._tokenizers[model_dir] = ChatTokenizer.from_dir(model_dir, escape_special_tokens=True)
            return self._tokenizers[model_dir]


def _adapter_base(adapter_dir: Path) -> Path | None:
    """The base directory an adapter was trained on, when it is still on this machine."""
    try:
        recorded = json.loads((adapter_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError):
        return None
    if recorded and Path(recorded).is_dir():
        return Path(recorded).resolve()
    return None


def _context_length(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text())
    return int(config.get("max_position_embeddings") or 2048)
