"""The web dashboard: static pages served by `tunery serve`, and the read-only endpoints they need.

`install_dashboard(app)` adds both to the API app. The pages use the public `/v1` API with the
browser's API key; `/v1/tunery/...` adds what that API lacks (full validation reports, token
views, metrics series, eval reports, monitoring), read-only and scoped to the key's organisation.
"""

from __future__ import annotations

from fastapi import FastAPI


def install_dashboard(app: FastAPI) -> None:
    from tunery.web import pages
    from tunery.web.api import evals, files, jobs, monitoring, session

    for module in (session, files, jobs, evals, monitoring):
        app.include_router(module.router, prefix="/v1/tunery")
    pages.mount(app)
