"""OpenAI-style error bodies: `{"error": {"message", "type", "param", "code"}}`.

Shared by the worker and the gateway so clients (the official `openai` package among them)
see one shape whatever answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class ErrorDetail(BaseModel):
    """What went wrong; some errors add fields (e.g. `available` model ids)."""

    model_config = ConfigDict(extra="allow")
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """Every error answer of the gateway and the worker, as the `openai` client parses it."""

    error: ErrorDetail


class APIError(Exception):
    """Raise anywhere in a request handler; the app turns it into an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}


def error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    err: dict[str, Any] = {
        "message": message,
        "type": _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        "param": param,
        "code": code,
    }
    if extra:
        err.update(extra)
    return {"error": err}


def error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(status, message, param=param, code=code, extra=extra), status_code=status, headers=headers
    )


def _readable(part: Any) -> bool:
    """False for the union-branch labels pydantic puts in a location (`str`, `list[...]`)."""
    return not (isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool", "none")))


def invalid_request(errors: Sequence[Any]) -> APIError:
    """A 400 naming the most specific of pydantic's (or FastAPI's) validation errors.

    The deepest location wins: for a value that fits no branch of a union, pydantic reports
    one error per branch, and the deepest says what is wrong inside the branch that was meant.
    """
    if not errors:
        return APIError(400, "invalid request", code="invalid_request")
    first = max(errors, key=lambda e: len(e.get("loc", ())))
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body" and _readable(p))
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")  # a validator's own words
    return APIError(400, f"{loc}: {msg}" if loc else msg, param=loc or None, code="invalid_request")


def install_handlers(app: FastAPI) -> None:
    """Make APIError, FastAPI's validation errors and HTTP errors answer in OpenAI's shape."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(APIError)
    async def _api_error(_request: Any, exc: APIError) -> JSONResponse:
        return error_response(
            exc.status, exc.message, param=exc.param, code=exc.code, headers=exc.headers, extra=exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Any, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        if first.get("type") == "json_invalid":
            why = first.get("ctx", {}).get("error", first.get("msg"))
            return error_response(400, f"request body is not valid JSON: {why}", code="invalid_json")
        err = invalid_request(errs)
        return error_response(err.status, err.message, param=err.param, code=err.code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Any, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))
