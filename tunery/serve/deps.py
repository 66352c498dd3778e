"""What a route handler needs from the running server, reached from its request.

Routes under serve/routes/ and the dashboard's endpoints under web/api/ both read `server_of(request)`,
so they depend on this small module, not on the app that assembles them (tunery/serve/app.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from tunery.jobs.layout import Home
from tunery.serve.catalog import Catalog
from tunery.serve.engine import ChatEngine
from tunery.serve.settings import ServerSettings
from tunery.store import Store


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
