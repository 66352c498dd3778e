"""Experiment trackers: a run's metrics, config and reports in TensorBoard, MLflow or Weights & Biases.

`report_to: [tensorboard, mlflow, wandb]` in the run config turns them on (none by default). The
trackers follow the run directory rather than the loops: a thread reads each new line of
`metrics.jsonl` and logs its numbers under the same names at the same step, so every method's
every metric reaches them and no loop knows they exist. The resolved `config.yaml` is logged as
parameters once the plan is made; at the end the final eval report and the model card go in as
artefacts (TensorBoard: as text). Each tracker uses its project's own client, an optional extra;
`trackers.json` in the run directory records where each tracker put the run, for the dashboard.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from tunery.errors import TuneryError
from tunery.train.config import RunConfig, flatten
from tunery.train.rundir import atomic_write

POLL_S = 2.0
EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
TRACKERS_FILE = "trackers.json"


def _missing(tracker: str, module: str) -> TuneryError:
    return TuneryError(
        f"report_to {tracker} needs the {module} package, which is not installed",
        hint=f"pip install 'tunery[{EXTRAS[tracker]}]'",
    )


def _numbers(record: dict) -> dict[str, float]:
    """The record's metrics: every number except the step counters, under its own name."""
    skip = {"type", "step", "total_steps"}
    return {k: float(v) for k, v in record.items() if k not in skip and isinstance(v, (int, float)) and v == v}


class TensorBoardTracker:
    """Event files under RUN_DIR/tensorboard, read by `tensorboard --logdir RUN_DIR/tensorboard`."""

    def __init__(self, config: RunConfig, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", "tensorboard") from None
        self.log_dir = run_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.link = {"type": "tensorboard", "log_dir": str(self.log_dir), "url": None}

    def params(self, params: dict[str, Any]) -> None:
        table = "\n".join(f"| {k} | {v} |" for k, v in params.items())
        self.writer.add_text("config", "| key | value |\n|---|---|\n" + table, 0)

    def metrics(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def artifact(self, path: Path) -> None:
        self.writer.add_text(path.name, path.read_text()[:100_000], 0)

    def close(self, state: str) -> None:
        self.writer.add_text("state", state, 0)
        self.writer.close()


class MlflowTracker:
    """A run in the MLflow experiment `tracking.project`, at `tracking.mlflow_uri` (default: MLflow's
    own, MLFLOW_TRACKING_URI or ./mlflow.db)."""

    def __init__(self, config: RunConfig, run_dir: Path):
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise _missing("mlflow", "mlflow") from None
        tracking = config.tracking
        self.client = MlflowClient(tracking.mlflow_uri) if tracking.mlflow_uri else MlflowClient()
        experiment = self.client.get_experiment_by_name(tracking.project)
        if experiment:
            experiment_id = experiment.experiment_id
        else:
            experiment_id = self.client.create_experiment(
                tracking.project, artifact_location=_artifact_root(self.client.tracking_uri, tracking.project)
            )
        name = tracking.name or run_dir.name
        self.run_id = self.client.create_run(
            experiment_id, run_name=name, tags={"tunery.run_dir": str(run_dir)}
        ).info.run_id
        uri = self.client.tracking_uri
        url = f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{self.run_id}" if uri.startswith("http") else None
        self.link = {"type": "mlflow", "tracking_uri": uri, "experiment_id": experiment_id, "run_id": self.run_id,
                     "url": url}  # fmt: skip

    def params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    def metrics(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def close(self, state: str) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if state == "succeeded" else "FAILED")


class WandbTracker:
    """A W&B run in `tracking.project`; offline (a directory under RUN_DIR/wandb, for `wandb sync`)
    unless an API key is configured (WANDB_API_KEY or `wandb login`), or WANDB_MODE says otherwise."""

    def __init__(self, config: RunConfig, run_dir: Path):
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb") from None
        tracking = config.tracking
        mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_key() else "offline")
        self.run = wandb.init(
            project=tracking.project,
            name=tracking.name or run_dir.name,
            entity=tracking.wandb_entity,
            tags=tracking.wandb_tags or None,
            dir=str(run_dir),
            mode=mode,
            reinit="create_new",
        )
        self.link = {"type": "wandb", "mode": mode, "run_id": self.run.id, "dir": self.run.dir,
                     "url": self.run.url if mode == "online" else None}  # fmt: skip

    def params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def artifact(self, path: Path) -> None:
        self.run.save(str(path), base_path=str(path.parent.parent), policy="now")

    def close(self, state: str) -> None:
        self.run.finish(exit_code=0 if state == "succeeded" else 1)


def _artifact_root(tracking_uri: str, project: str) -> str | None:
    """A local SQLite store keeps its artefacts beside the database; MLflow's own default would be
    ./mlruns under whatever directory training happened to start in."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
    return (database.parent / "mlartifacts" / project).as_uri()


def _wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace")


TRACKERS = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker, "wandb": WandbTracker}


class Tracking:
    """The trackers of one training process, fed from the run directory by a polling thread.

    Use as a context manager around training: `with Tracking(config, run_dir) as t: train(...)`,
    then `t.finish(state, artefacts)`.
    """

    def __init__(self, config: RunConfig, run_dir: Path):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self.trackers = [TRACKERS[name](config, run_dir) for name in config.report_to]
        self._offset = 0  # a resumed run is a new tracker run: it gets the history again
        self._params_logged = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._follow, name="tunery-trackers", daemon=True)
        atomic_write(run_dir / TRACKERS_FILE, json.dumps([t.link for t in self.trackers], indent=2))

    def __enter__(self) -> Tracking:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()
        if exc[0] is not None:
            self.finish("failed", [])

    def _follow(self) -> None:
        while not self._stop.wait(POLL_S):
            self.poll()

    def poll(self) -> None:
        """Log the resolved config once it is written, and every complete new metrics line."""
        with self._lock:
            config_file = self.run_dir / "config.yaml"
            if not self._params_logged and config_file.is_file():
                import yaml

                params = flatten(yaml.safe_load(config_file.read_text()) or {})
                for tracker in self.trackers:
                    tracker.params(params)
                self._params_logged = True
            metrics = self.run_dir / "metrics.jsonl"
            if _size(metrics) < self._offset:  # rewritten (resume truncates it): follow the new file
                self._offset = 0
            with metrics.open("rb") if metrics.is_file() else open(os.devnull, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
            complete = data[: data.rfind(b"\n") + 1]
            self._offset += len(complete)
            for line in complete.splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                values = _numbers(record)
                if values and "step" in record:
                    for tracker in self.trackers:
                        tracker.metrics(values, int(record["step"]))

    def finish(self, state: str, artefacts: list[Path]) -> None:
        """Log the artefacts that exist (final eval report, model card) and close every tracker."""
        with self._lock:
            for tracker in self.trackers:
                for path in artefacts:
                    if path.is_file():
                        tracker.artifact(path)
                tracker.close(state)
            self.trackers = []


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0
