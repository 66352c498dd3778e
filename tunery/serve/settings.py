"""Server settings: a YAML file (optional), the `TUNERY_API_KEYS` variable, then CLI flags.

    # server.yaml
    api_keys: {sk-alpha: org-alpha, sk-beta: org-beta}   # key → organisation
    models: {smollm2-135m-instruct: smollm2-135m-instruct, tiny: /models/tiny}  # served name → reference
    upstreams: {support-bot: {url: "http://gpu-box:8000/v1", api_key_env: VLLM_KEY}}  # forwarded models
    max_upload_bytes: 536870912
    adapter_cache_size: 8

`TUNERY_API_KEYS="key1=org1,key2=org2"` adds keys. Without any key the server runs in local
mode: it refuses to listen beyond loopback, and every request acts as organisation `local`.
`TUNERY_DATABASE_URL=postgresql://...` (or `database_url:`) keeps the store in PostgreSQL, so
workers on other hosts (`tunery worker`) can share the queue; the default is SQLite in `home`.
`TUNERY_MONITOR_EVERY=60s` (or `monitor_every: 60s`) turns on background re-evaluation of due
monitor suites (see `tunery.monitor.background`).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunery.errors import TuneryError
from tunery.models import DEFAULT_MODEL
from tunery.monitor.periods import parse_duration
from tunery.serve.forwarding import Upstream
from tunery.store import DATABASE_URL_ENV

LOCAL_ORG = "local"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # names become parts of `ft:base:org:...`
_UPSTREAM_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"  # may be a fine-tuned model's `ft:...` name


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    home: Path = Field(description="state directory: store, uploaded files, job runs")
    api_keys: dict[str, str] = Field(default_factory=dict, description="API key → organisation id")
    models: dict[str, str] = Field(
        default_factory=lambda: {DEFAULT_MODEL: DEFAULT_MODEL},
        description="base models offered: served name → model reference (embedded name, directory, hub id)",
    )
    upstreams: dict[str, Upstream] = Field(
        default_factory=dict,
        description="models whose chat completions another OpenAI-compatible server answers: name → where "
        "(see tunery.serve.forwarding); an `ft:` name stays private to the organisation that trained it",
    )
    max_upload_bytes: int = Field(512 * 1024 * 1024, gt=0, description="largest accepted upload")
    adapter_cache_size: int = Field(8, ge=1, description="LoRA adapters kept loaded per base model")
    base_cache_size: int = Field(2, ge=1, description="base (or fully fine-tuned) models kept loaded")
    max_batch_size: int = Field(8, ge=1, description="chat requests generated together at most")
    default_max_tokens: int = Field(512, ge=1, description="completion length when a request sets none")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="where chat models run")
    threads: int | None = Field(
        None, ge=1, description="CPU threads for generation; default half the cores, the rest left to training"
    )
    database_url: str | None = Field(
        None,
        pattern=r"^postgres(ql)?://",
        description="PostgreSQL store (postgresql://user:password@host/db) shared with workers on other "
        "hosts; None = the SQLite file in home, for one host",
    )
    lease_seconds: float = Field(
        60, gt=1, description="how long a job stays with a worker that stops renewing it before another takes over"
    )
    monitor_every: float | None = Field(
        None,
        gt=0,
        description="seconds (or a duration: 60s, 5m) between checks for due monitor suites, which then run "
        "in a child process; None = never (the default: cron's `tunery monitor run` does it instead)",
    )

    @field_validator("api_keys")
    @classmethod
    def _orgs_are_names(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        for key, org in value.items():
            if not key or not re.match(_NAME, org):
                raise ValueError(f"organisation {org!r} must match {_NAME} (it becomes part of model names)")
        return value

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        for name in value:
            if not re.match(_NAME, name) or name.startswith("ft"):
                raise ValueError(f"model name {name!r} must match {_NAME} and not start with 'ft'")
        return value

    @field_validator("monitor_every", mode="before")
    @classmethod
    def _duration(cls, value):
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except TuneryError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _upstream_names(self):
        import re

        for name in self.upstreams:
            if not re.match(_UPSTREAM_NAME, name):
                raise ValueError(f"upstream model name {name!r} must match {_UPSTREAM_NAME}")
            if name in self.models:
                raise ValueError(
                    f"{name!r} is both a local base model (models) and a forwarded one (upstreams); keep one"
                )
        return self

    @property
    def local_mode(self) -> bool:
        return not self.api_keys


def parse_key_list(text: str) -> dict[str, str]:
    """`"key1=org1,key2=org2"` → {"key1": "org1", "key2": "org2"}."""
    keys = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, org = item.partition("=")
        if not sep or not key.strip() or not org.strip():
            raise TuneryError(
                f"TUNERY_API_KEYS entry {item!r} is not key=org", hint='TUNERY_API_KEYS="key1=org1,key2=org2"'
            )
        keys[key.strip()] = org.strip()
    return keys


def load_settings(
    config: Path | None,
    *,
    home: Path | None = None,
    models: dict[str, str] | None = None,
    upstreams: dict[str, Upstream] | None = None,
    **overrides,
) -> ServerSettings:
    """Settings from `config` (if given), TUNERY_API_KEYS and TUNERY_MONITOR_EVERY, and explicit
    overrides, in that order.

    Raises:
        TuneryError: an unreadable file or invalid settings, with the key at fault.
    """
    import yaml

    data: dict = {}
    if config is not None:
        try:
            data = yaml.safe_load(Path(config).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise TuneryError(f"cannot read server config {config}: {exc}") from None
        if not isinstance(data, dict):
            raise TuneryError(f"{config} must hold a mapping of settings")
    if os.environ.get("TUNERY_API_KEYS"):
        data["api_keys"] = {**(data.get("api_keys") or {}), **parse_key_list(os.environ["TUNERY_API_KEYS"])}
    if os.environ.get(DATABASE_URL_ENV):
        data["database_url"] = os.environ[DATABASE_URL_ENV]
    if os.environ.get("TUNERY_MONITOR_EVERY"):
        data["monitor_every"] = os.environ["TUNERY_MONITOR_EVERY"]
    if models:
        data["models"] = {**(data.get("models") or {DEFAULT_MODEL: DEFAULT_MODEL}), **models}
    if upstreams:
        data["upstreams"] = {**(data.get("upstreams") or {}), **upstreams}
    if home is not None:
        data["home"] = home
    data.update({k: v for k, v in overrides.items() if v is not None})
    if "home" not in data:
        from tunery.home import tunery_home

        data["home"] = tunery_home() / "server"
    try:
        return ServerSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise TuneryError(f"invalid server settings{f' in {config}' if config else ''}: {problems}") from None
