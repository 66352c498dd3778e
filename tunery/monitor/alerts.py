"""Alert delivery to a webhook: one JSON POST per alerting suite result, with the standard library.

The body is the result (suite, run, level, message, metrics, baseline, each alert). Slack- and
Teams-style incoming webhooks accept it as is when they read a `text` field, so one is included.
A webhook that fails is reported, never retried in a loop: the alert is already in the registry
and in the exit code, and the next `monitor run` reports again if the metric is still down.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlparse

from tunery.errors import TuneryError

TIMEOUT_S = 10


def check_webhook_url(url: str) -> str:
    """The URL if it is http(s) with a host.

    Raises:
        TuneryError: anything else (a file: URL would read local files).
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise TuneryError(
            f"webhook {url!r} is not an http(s) URL", hint="e.g. --webhook https://hooks.example.com/tunery"
        )
    return url


def post_alert(url: str, payload: dict) -> str | None:
    """POST the payload as JSON; returns None on a 2xx answer, else what went wrong."""
    body = json.dumps({"text": f"[tunery {payload.get('level')}] {payload.get('message')}", **payload}).encode()
    request = urllib.request.Request(
        check_webhook_url(url), data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - scheme checked above
            return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))
