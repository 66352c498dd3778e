"""Helpers for the dashboard tests: Chromium launch flags, screenshots, and API calls with a key."""

from __future__ import annotations

from pathlib import Path

import httpx
from builders import REPO

# Debian's chromium; Playwright's own browser download cannot work offline.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"


def screenshot(page, name: str) -> Path:
    """A full-page PNG in test-artifacts/screenshots/ (gitignored), for a person to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def api_get(dashboard, path: str, key: str | None = "sk-alpha", **params) -> httpx.Response:
    """GET a path of the dashboard's server as the organisation of `key` (none: no Authorization)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(dashboard.url + path, headers=headers, params=params, timeout=120)
