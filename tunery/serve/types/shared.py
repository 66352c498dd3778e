"""Shapes every endpoint shares: the error body and the cursor-paginated list."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class ErrorObject(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorObject


class CursorPage(BaseModel, Generic[T]):
    """`{"object": "list", "data": [...], "has_more": bool}`; the client pages with `after=<last id>`."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None

    @classmethod
    def of(cls, items: list, has_more: bool) -> CursorPage:
        return cls(
            data=items,
            has_more=has_more,
            first_id=items[0].id if items else None,
            last_id=items[-1].id if items else None,
        )
