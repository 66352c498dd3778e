"""The FastAPI application: wiring of settings, store, catalog, engine and the `/v1` routes.

The dashboard (tunery/web/) sits above the API and is installed by whoever assembles the whole
server (`tunery serve`, tunery/commands/serve.py), so this package never imports it.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tunery.jobs.layout import Home
from tunery.serve.catalog import Catalog
from tunery.serve.deps import Server
from tunery.serve.engine import ChatEngine
from tunery.serve.errors import install_error_handlers
from tunery.serve.settings import ServerSettings
from tunery.serve.upload import sweep_partial_uploads
from tunery.store import open_store

log = logging.getLogger("tunery.serve")


def create_app(settings: ServerSettings) -> FastAPI:
    from tunery import __version__
    from tunery.serve.routes import chat_completions, files, fine_tuning_jobs, graders, models

    home = Home.at(settings.home)
    for partial in sweep_partial_uploads(home.root / "files"):
        log.warning("removed a partial upload left by a server that stopped mid-upload: %s", partial.name)
    store = open_store(settings.database_url or home.db)
    engine = ChatEngine(
        device=settings.device,
        base_cache_size=settings.base_cache_size,
        adapter_cache_size=settings.adapter_cache_size,
        max_batch_size=settings.max_batch_size,
        threads=settings.threads,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Inside the lifespan, so it starts once per serving process and stops with it.
        scheduler = None
        if settings.monitor_every is not None:
            from tunery.monitor.background import MonitorScheduler

            scheduler = MonitorScheduler(settings.monitor_every, device=settings.device, threads=settings.threads)
            scheduler.start()
        yield
        if scheduler is not None:
            scheduler.stop()
        engine.stop()

    # No Swagger UI: it loads from a CDN, so it is blank offline; the dashboard's /api renders the schema.
    app = FastAPI(title="tunery", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = Server(settings, home, store, Catalog(settings, store), engine)
    install_error_handlers(app)
    for module in (files, fine_tuning_jobs, graders, models, chat_completions):
        app.include_router(module.router, prefix="/v1")

    # Async, so it is answered on the event loop: a sync route would queue for the same thread pool
    # as every other request, and a flood of them would make the health check time out.
    @app.get("/health", include_in_schema=False)
    async def health() -> dict:
        return {"status": "ok"}

    return app
