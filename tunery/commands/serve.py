"""`tunery serve`: the OpenAI-compatible API plus a worker process that runs fine-tuning jobs."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Serve the OpenAI-compatible API (files, fine-tuning jobs, models, chat) and run jobs."
EXAMPLES = """\
  tunery serve                                   # loopback only, no keys, home ~/.cache/tunery/server
  TUNERY_API_KEYS="sk-a=org-a,sk-b=org-b" tunery serve --host 0.0.0.0 --port 8000
  tunery serve --home ./server --workers 2 --model tiny=./models/tiny
  tunery serve --config server.yaml              # api_keys, models, max_upload_bytes, adapter_cache_size, ...
  tunery serve --upstream bot=http://gpu-box:8000/v1   # chat for "bot" answered by vLLM there
  tunery serve --monitor-every 60s               # also run due `tunery monitor` suites (default: cron does)

  Then: OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="sk-a")
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--home", type=Path, help="state directory: store, files, job runs (default $TUNERY_HOME/server)"
    )
    parser.add_argument("--workers", type=int, default=1, help="fine-tuning jobs run at once; 0 = API only (default 1)")
    parser.add_argument("--config", type=Path, help="server settings YAML (api_keys, models, limits)")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=REF",
        help="offer a base model under NAME (repeatable); REF as for `tunery train --model`",
    )
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="NAME=URL[,MODEL]",
        help="forward chat completions for NAME to the OpenAI-compatible server at URL (e.g. vLLM), where it "
        "is called MODEL (default NAME); repeatable. API keys and timeouts: `upstreams:` in --config",
    )
    parser.add_argument("--max-upload-mb", type=int, help="largest accepted upload, in MiB (default 512)")
    parser.add_argument("--adapter-cache", type=int, help="LoRA adapters kept loaded per base (default 8)")
    parser.add_argument("--device", help="where chat models run: auto, cpu, cuda (default auto)")
    parser.add_argument("--threads", type=int, help="CPU threads for generation (default: half the cores)")
    parser.add_argument(
        "--monitor-every",
        metavar="DURATION",
        help="check this often (60s, 5m) for due monitor suites and run them in a child process "
        "(default $TUNERY_MONITOR_EVERY, else off: run `tunery monitor run` from cron)",
    )


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    import sys

    from tunery.errors import TuneryError
    from tunery.serve.forwarding import parse_upstream_flag
    from tunery.serve.settings import LOCAL_ORG, load_settings

    models = {}
    for pair in args.model:
        name, sep, ref = pair.partition("=")
        if not sep or not name or not ref:
            raise TuneryError(f"--model {pair!r} is not NAME=REF", hint="--model tiny=./models/tiny")
        models[name] = ref
    if args.workers < 0:
        raise TuneryError("--workers must be 0 or more")
    settings = load_settings(
        args.config,
        home=args.home,
        models=models,
        upstreams=dict(parse_upstream_flag(flag) for flag in args.upstream),
        device=args.device,
        max_upload_bytes=args.max_upload_mb * 1024 * 1024 if args.max_upload_mb else None,
        adapter_cache_size=args.adapter_cache,
        threads=args.threads,
        monitor_every=args.monitor_every,
    )
    if settings.local_mode and not is_loopback(args.host):
        raise TuneryError(
            f"refusing to listen on {args.host} without API keys: anyone who can reach it could use it",
            hint='set TUNERY_API_KEYS="key1=org1,key2=org2" (or api_keys in --config), or use --host 127.0.0.1',
        )
    import uvicorn

    from tunery.serve.app import create_app
    from tunery.web import install_dashboard

    app = create_app(settings)
    install_dashboard(app)  # the web pages at / and their read-only /v1/tunery endpoints
    print(
        f"tunery serve: http://{args.host}:{args.port}/v1  home {settings.home}  "
        f"models {', '.join(settings.models)}  job slots {args.workers}  "
        f"monitor {f'every {settings.monitor_every:g}s' if settings.monitor_every else 'off'}",
        file=sys.stderr,
        flush=True,
    )
    for name, upstream in settings.upstreams.items():
        print(f"forwarding chat for {name} to {upstream.endpoint}", file=sys.stderr, flush=True)
    if settings.local_mode:
        print(
            f"no API keys configured: listening on loopback only; every request acts as organisation "
            f'{LOCAL_ORG!r}. Set TUNERY_API_KEYS="key=org,..." to require keys.',
            file=sys.stderr,
            flush=True,
        )
    supervisor = None
    if args.workers:
        from tunery.jobs.supervisor import WorkerSupervisor

        # A separate process: training never runs inside the API process, and a crashing
        # trainer cannot take the API down.
        supervisor = WorkerSupervisor(
            settings.home, args.workers, database_url=settings.database_url, lease_s=settings.lease_seconds
        )
        supervisor.start()
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=5)
    finally:
        if supervisor is not None:
            supervisor.stop()
    return 0
