"""Cursor pagination for the list endpoints: a store page → OpenAI's `{"object": "list", ...}`.

Every cursor-paginated route does the same three things: ask the store for one page after a
cursor, answer an `after` id that names nothing in that list with the 404 OpenAI gives, and
wrap the records as wire objects. They live here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tunery.serve.errors import not_found
from tunery.serve.types.shared import CursorPage
from tunery.store.records import Page, UnknownCursor

R = TypeVar("R")
W = TypeVar("W")


def cursor_page(fetch: Callable[[], Page[R]], wire: Callable[[R], W], kind: str, after: str | None) -> CursorPage[W]:
    """`fetch()` one store page and convert each record with `wire`.

    Raises:
        APIError: 404 naming `kind` when `after` is not an id in the listed collection.
    """
    try:
        page = fetch()
    except UnknownCursor:
        raise not_found(kind, after, param="after") from None
    return CursorPage.of([wire(record) for record in page.items], page.has_more)
