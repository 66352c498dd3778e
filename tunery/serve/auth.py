"""API keys → organisations. Each request acts for exactly one organisation.

With keys configured, a missing or unknown `Authorization: Bearer` key is a 401. In local mode
(no keys) the server listens on loopback only and every request acts as organisation `local`.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from tunery.serve.errors import APIError
from tunery.serve.settings import LOCAL_ORG


def current_org(request: Request) -> str:
    """FastAPI dependency: the organisation the request's API key belongs to."""
    keys: dict[str, str] = request.app.state.server.settings.api_keys
    if not keys:
        return LOCAL_ORG
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise APIError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
            code="missing_api_key",
            type="invalid_request_error",
        )
    key = key.strip()
    for known, org in keys.items():
        if hmac.compare_digest(known.encode(), key.encode()):  # constant time: no key guessing by timing
            return org
    raise APIError(401, "Incorrect API key provided.", code="invalid_api_key", type="invalid_request_error")
