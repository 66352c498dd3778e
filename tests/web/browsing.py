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


# What overflows: the page itself, or a card (a table or a pane wider than its box). Content
# inside a scrolling box (overflow: auto) is clipped by that box, so it does not count.
SIDEWAYS = """() => {
    const wide = (node) => node.scrollWidth > node.clientWidth + 1;
    const found = [];
    const root = document.scrollingElement;
    if (wide(root)) found.push(`the page: ${root.scrollWidth}px wide in a ${root.clientWidth}px window`);
    for (const card of document.querySelectorAll(".card, .panes, .page-head, table")) {
        const style = getComputedStyle(card);
        if (wide(card) && style.overflowX !== "auto" && style.overflowX !== "scroll") {
            const title = card.querySelector("h2")?.textContent || card.id || card.className;
            found.push(`${card.tagName.toLowerCase()} "${title}": ${card.scrollWidth}px of content in ${card.clientWidth}px`);
        }
    }
    return found;
}"""


def sideways_overflow(page) -> list[str]:
    """What makes `page` wider than its window, or a card wider than itself (empty: nothing)."""
    return page.evaluate(SIDEWAYS)
