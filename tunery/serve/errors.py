"""OpenAI-style errors: `{"error": {"message", "type", "param", "code"}}` with a proper status.

Every failure path of the API ends here, including FastAPI's own validation errors and
unknown routes, so the openai client always gets a body it can turn into its exception types.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("tunery.serve")

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class APIError(Exception):
    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None, type: str | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def not_found(kind: str, object_id: str, *, param: str | None = None, code: str | None = None) -> APIError:
    """Another organisation's object is reported exactly like a missing one."""
    return APIError(404, f"No such {kind}: {object_id}", param=param, code=code)


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        # Union branches add their type names to the location; the first field name is the param.
        param = ".".join(p for p in loc if not p.startswith(("literal[", "int", "float", "str", "function-")))
        detail = first["msg"].removeprefix("Value error, ")  # a validator's own message, said plainly
        message = f"{param}: {detail}" if param else detail
        return error_response(APIError(400, message, param=param or None, code="invalid_value"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = (
            "Unknown request URL: " + f"{request.method} {request.url.path}"
            if exc.status_code in (404, 405)
            else str(exc.detail)
        )
        return error_response(
            APIError(exc.status_code, message, code="unknown_url" if exc.status_code == 404 else None)
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(APIError(500, f"internal server error: {type(exc).__name__}: {exc}", type="server_error"))
