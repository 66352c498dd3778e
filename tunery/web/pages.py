"""The dashboard's pages: one HTML shell per path, each loading its own small JS module from /ui/.

No build step: the files under `static/` are what the browser runs. Every page is the same
shell with a different title and script; the script fetches its data with the browser's API
key, so the HTML itself holds nothing private and needs no auth.
"""

from __future__ import annotations

from importlib import resources
from string import Template

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

# path → (title, page script). Detail pages read their id from the URL.
PAGES = {
    "/": ("Jobs", "jobs.js"),
    "/jobs/{job_id}": ("Job", "job.js"),
    "/files": ("Files", "files.js"),
    "/files/{file_id}": ("File", "file.js"),
    "/eval": ("Evaluation", "eval.js"),
    "/playground": ("Playground", "playground.js"),
    "/monitoring": ("Monitoring", "monitoring.js"),
    "/api": ("API reference", "api_reference.js"),  # offline, unlike Swagger UI (from a CDN), which is off
}
# Scripts and styles come only from this server, never inline: data shown on a page (file
# contents, model outputs) can then never run as code.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}


def render_page(title: str, script: str) -> str:
    from tunery import __version__

    shell = resources.files("tunery.web").joinpath("static", "shell.html").read_text(encoding="utf-8")
    return Template(shell).substitute(title=title, script=script, version=__version__)


def mount(app: FastAPI) -> None:
    """Serve the assets under /ui and each page at its path."""
    app.mount("/ui", StaticFiles(packages=[("tunery.web", "static")]), name="ui")
    for path, (title, script) in PAGES.items():
        app.add_api_route(
            path,
            _page(render_page(title, script)),
            methods=["GET"],
            include_in_schema=False,
            response_class=HTMLResponse,
        )


def _page(html: str):
    def page() -> HTMLResponse:
        return HTMLResponse(html, headers=HEADERS)

    return page
