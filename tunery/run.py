"""`Run`: a run directory as Python sees it, what `tunery.train` returns.

It reads what the training loop wrote (config.yaml, status.json, metrics.jsonl, checkpoints/,
final/, eval/) and loads the tuned model only when `generate` is first called. Nothing here
writes to the run.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunery.errors import TuneryError

if TYPE_CHECKING:
    from tunery.inference import Generator
    from tunery.train.config import RunConfig


class Run:
    """One training run's directory: config, status, metrics, checkpoints, final model, answers.

    Example:
        >>> run = tunery.Run("runs/first")          # doctest: +SKIP
        >>> run.metrics[-1]["train_loss"], run.final  # doctest: +SKIP
        >>> run.generate("Where is my order?")       # doctest: +SKIP
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "config.yaml").is_file():
            raise TuneryError(
                f"{self.path} is not a tunery run directory (no config.yaml)",
                hint="give the directory `tunery train --output` wrote",
            )
        self._generator: tuple[Generator, str | None] | None = None

    def __repr__(self) -> str:
        status = self.status
        return f"Run({str(self.path)!r}, state={status.get('state')!r}, step={status.get('step')})"

    @cached_property
    def config(self) -> RunConfig:
        """The resolved config the run trained with (every "auto" replaced by its value)."""
        from tunery.train.config import load_config

        return load_config(self.path / "config.yaml")

    @property
    def status(self) -> dict[str, Any]:
        """`state` (running, succeeded, failed, interrupted), `step`, `total_steps`, `error`."""
        file = self.path / "status.json"
        return json.loads(file.read_text()) if file.is_file() else {}

    @property
    def succeeded(self) -> bool:
        return self.status.get("state") == "succeeded"

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """Every record of metrics.jsonl, in order; `type` is train or valid."""
        from tunery.train.rundir import RunDir

        return RunDir(self.path).read_metrics()

    @property
    def checkpoints(self) -> list[Path]:
        """Checkpoint directories kept on disk, oldest first."""
        from tunery.train.checkpoint import list_checkpoints

        return list_checkpoints(self.path / "checkpoints")

    @property
    def final(self) -> Path | None:
        """The final model (adapter or full weights, with tokenizer and manifest), once succeeded."""
        final = self.path / "final"
        return final if (final / "tunery.json").is_file() else None

    @property
    def manifest(self) -> dict[str, Any]:
        """final/tunery.json: base model and its hash, data hashes, library versions, final metrics."""
        final = self.final
        return json.loads((final / "tunery.json").read_text()) if final else {}

    @property
    def eval_report(self) -> dict[str, Any] | None:
        """The final eval's summary (eval/report.json), when the run had validation data."""
        file = self.path / "eval" / "report.json"
        return json.loads(file.read_text()) if file.is_file() else None

    def generate(
        self,
        prompt: str | list[dict],
        *,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        seed: int | None = None,
        device: str = "auto",
    ) -> str:
        """The tuned model's answer to one user message, or to a list of chat messages.

        The model is loaded on the first call and kept for the next ones. Greedy at temperature 0.
        """
        if self._generator is None:
            if self.final is None:
                raise TuneryError(
                    f"{self.path} has no final model yet (state {self.status.get('state')!r})",
                    hint=f"finish it first: tunery train --resume {self.path}",
                )
            from tunery.eval.evaluate import load_generator

            generator, adapter, _, _ = load_generator(None, self.path, device=device)
            self._generator = (generator, adapter)
        generator, adapter = self._generator
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        (completion,) = generator.generate(
            [messages], adapter=adapter, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
        )
        return completion.text
