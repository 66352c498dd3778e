"""The FastAPI application: wiring of settings, store, catalog, engine and the `/v1` routes."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request

from tunery.jobs.layout import Home
from tunery.serve.catalog import Catalog
from tunery.serve.engine import ChatEngine
from tunery.serve.errors import install_error_handlers
from tunery.serve.settings import ServerSettings
from tunery.serve.upload import sweep_partial_uploads
from tunery.store import Store, open_store

log = logging.getLogger("tunery.serve")


@dataclass
class Server:
    """What every route needs; one per app, at `app.state.server`."""

    settings: ServerSettings
    home: Home
    store: Store
    catalog: Catalog
    engine: ChatEngine


def server_of(request: Request) -> Server:
    return request.app.state.server


def create_app(settings: ServerSettings) -> FastAPI:
    from tunery import __version__
    from tunery.serve.routes import chat_completions, files, fine_tuning_jobs, graders, models
    from tunery.web import install_dashboard

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

    app = FastAPI(title="tunery", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.server = Server(settings, home, store, Catalog(settings, store), engine)
    install_error_handlers(app)
    for module in (files, fine_tuning_jobs, graders, models, chat_completions):
        app.include_router(module.router, prefix="/v1")
    install_dashboard(app)  # the web pages at / and their read-only /v1/tunery endpoints

    # Async, so it is answered on the event loop: a sync route would queue for the same thread pool
    # as every other request, and a flood of them would make the health check time out.
    @app.get("/health", include_in_schema=False)
    async def health() -> dict:
        return {"status": "ok"}

    return app
