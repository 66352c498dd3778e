"""Where the server keeps its state under its home directory.

Every worker on every host must see the same home at the same path (a shared mount), since
the store records absolute paths and any worker may resume any job from its run directory.

HOME/tunery.db                 the store (SQLite, WAL), unless TUNERY_DATABASE_URL names PostgreSQL
HOME/files/<file-id>           uploaded bytes, named by id: a client's filename is never a path
HOME/jobs/<job-id>/config.yaml the run config the API wrote for `tunery train --config`
HOME/jobs/<job-id>/run/        the trainer's RUN_DIR (metrics.jsonl, status.json, checkpoints/, final/)
HOME/jobs/<job-id>/train.log   the trainer's stdout and stderr
HOME/jobs/<job-id>/checkpoints/step-N/  servable copies of checkpoints (hard links where possible),
                               kept even when the trainer rotates its own
HOME/workers/<host>.lock       held by the one worker process allowed per host (it has --slots)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def at(cls, root: str | Path) -> Home:
        root = Path(root).expanduser().resolve()
        for sub in ("files", "jobs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return cls(root)

    @property
    def db(self) -> Path:
        return self.root / "tunery.db"

    def worker_lock(self, host: str) -> Path:
        return self.root / "workers" / f"{host}.lock"

    def file_path(self, file_id: str) -> Path:
        return self.root / "files" / file_id

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def job_config(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "config.yaml"

    def run_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "run"

    def train_log(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "train.log"

    def checkpoint_copy(self, job_id: str, step: int) -> Path:
        return self.job_dir(job_id) / "checkpoints" / f"step-{step:06d}"
