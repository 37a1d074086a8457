"""The API's error answers: one shape everywhere, ``{"errors": [{"field", "rule", "value"}]}``."""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cmvoice.errors import NOTHING, BrokerUnavailable, FieldError
from cmvoice.privacy import quote_value
from cmvoice.validation_errors import describe_validation_error

logger = logging.getLogger(__name__)

#: The rule of an answer 500: what broke is in the server's log, never in the answer.
INTERNAL_ERROR = "internal error"
#: The rule of an answer 503.
UNAVAILABLE = "Redis or the broker cannot be reached; retry later"


class ErrorItem(BaseModel):
    """One broken rule: the field, the rule, and the (masked) value that broke it."""

    field: str
    rule: str
    value: str


class ErrorsBody(BaseModel):
    """Every error answer of the API (4xx and 5xx)."""

    errors: list[ErrorItem]


class ApiProblem(Exception):
    """Raised by an endpoint to answer ``status`` with ``errors`` (and ``headers``)."""

    def __init__(
        self,
        status: int,
        errors: Iterable[FieldError],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.errors = list(errors)
        self.headers = dict(headers or {})
        super().__init__(f"{status}: " + "; ".join(str(error) for error in self.errors))


def problem(status: int, field: str, rule: str, value: str = "") -> ApiProblem:
    """An ApiProblem with one error."""
    return ApiProblem(status, [FieldError(field, rule, value)])


def errors_response(
    status: int, errors: Iterable[FieldError], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"errors": [{"field": e.field, "rule": e.rule, "value": e.value} for e in errors]}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of an endpoint's error answers: all of them ErrorsBody."""
    return {status: {"model": ErrorsBody} for status in statuses}


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request's body, refused with 413 past ``max_bytes`` before it is all read."""
    body = bytearray()
    async for chunk in bounded_stream(request, max_bytes):
        body += chunk
    return bytes(body)


async def bounded_stream(request: Request, max_bytes: int) -> AsyncGenerator[bytes, None]:
    """The request's body as it arrives; 413 as soon as it is (or says it will be) too long."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes, f"{int(declared)} bytes")
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise _too_large(max_bytes, f"over {max_bytes} bytes")
            yield chunk
    except ClientDisconnect:
        # Nobody reads this answer; it keeps a traceback out of the log for every such client.
        raise problem(400, "body", "the client left before the body ended") from None


def _too_large(max_bytes: int, got: str) -> ApiProblem:
    return problem(413, "body", f"must be at most {max_bytes} bytes", got)


def _field_name(error: Any) -> str:
    """``instruction`` or ``expires_in``: the location in the request's JSON body."""
    return ".".join(str(part) for part in error["loc"] if part != "body") or "body"


def _shown_value(error: Any) -> str:
    """A rejected value of the request's own fields: text only for ``kind`` (one of a few words),
    numbers and booleans as they are, anything else by its type, since it may be a number."""
    value = error.get("input")
    if (_field_name(error) == "kind" and isinstance(value, str)) or isinstance(
        value, bool | int | float
    ):
        return quote_value(value)
    return "null" if value is None else f"a {type(value).__name__}"


def request_errors(exc: ValidationError) -> list[FieldError]:
    """A validation error of the request's body as FieldErrors, values masked."""
    return describe_validation_error(exc, name_field=_field_name, show_value=_shown_value)


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app can answer, in the one shape; 500s log their stack, never data."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return errors_response(exc.status, exc.errors, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Parameters FastAPI checks itself; request bodies are checked by request_errors.
        errors = [
            FieldError(
                _field_name(error),
                str(error.get("msg", "is invalid")),
                NOTHING if error.get("type") == "missing" else _shown_value(error),
            )
            for error in exc.errors()
        ]
        return errors_response(422, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown paths (404) and methods (405): the same shape as every other answer.
        field = "path" if exc.status_code == 404 else "method"
        value = request.url.path if exc.status_code == 404 else request.method
        return errors_response(
            exc.status_code, [FieldError(field, str(exc.detail).lower(), value)], exc.headers
        )

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("%s %s: %s", request.method, request.url.path, type(exc).__name__)
        return errors_response(503, [FieldError("", UNAVAILABLE, "")], {"Retry-After": "5"})

    for unavailable in (redis.ConnectionError, redis.TimeoutError, OperationalError):
        app.add_exception_handler(unavailable, _unavailable)
    app.add_exception_handler(BrokerUnavailable, _unavailable)
    app.add_middleware(InternalErrorGuard)


class InternalErrorGuard:
    """Answers 500 in the API's shape for any uncaught exception, and logs its stack: the
    exception's type and frames, not its message, which could hold a number or a code."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            stack = "".join(traceback.format_tb(exc.__traceback__))
            logger.error(
                "%s %s failed with %s (message withheld: it may hold personal data)\n%s",
                scope.get("method"),
                scope.get("path"),
                type(exc).__name__,
                stack,
            )
            if not started:
                response = errors_response(500, [FieldError("", INTERNAL_ERROR, "")])
                await response(scope, receive, send)
