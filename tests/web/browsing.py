"""Helpers for driving the dashboard in headless Chromium: launch flags and screenshots."""

from __future__ import annotations

from pathlib import Path

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
