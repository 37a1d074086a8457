"""The simulator's HTTP side: CM's instruction endpoints and the ``/_sim`` control API."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from cmvoice.errors import InvalidInstruction
from cmvoice.instructions import MODELS, Instruction, normalize_number, parse_instruction
from cmvoice.privacy import quote_value
from cmvoice.simulator.config import SimulatorConfig
from cmvoice.simulator.engine import SimulatorEngine
from cmvoice.simulator.faults import Faults, RequestFault
from cmvoice.simulator.refusals import Refusal
from cmvoice.simulator.scenarios import Scenario
from cmvoice.validation_errors import describe_validation_error, dotted_location

#: Header that carries the product token, as CM names it.
TOKEN_HEADER = "X-CM-PRODUCTTOKEN"  # noqa: S105 (a header name, not a secret)
#: The app of each path segment (matched case-insensitively, like CM's ASP.NET routes).
APP_KINDS: dict[str, str] = {model.app.lower(): kind for kind, model in MODELS.items()}
#: Bodies up to this size are read to the end before a 413, so the client sees the answer
#: instead of a reset connection; larger ones are refused at once.
_DRAIN_LIMIT_BYTES = 1024 * 1024
_Control = TypeVar("_Control", Faults, Scenario, Refusal)


class _Refusal(Exception):
    """An answer other than call-queued, raised from the checks of an instruction POST."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, **(extra or {})}
        self.headers = headers

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def _callee_param(request: Request) -> str | None:
    """The ``?callee=`` of a control request, as E.164; a 400 refusal if it is no number."""
    callee = request.query_params.get("callee")
    if not callee:
        return None
    try:
        return normalize_number(callee)
    except ValueError as exc:
        raise _Refusal(400, f"callee: {exc}") from None


def _message(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status)


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The body, or a 413 refusal once it passes ``max_bytes`` (declared or actual)."""
    drain_limit = max(max_bytes, _DRAIN_LIMIT_BYTES)
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _Refusal(400, "Content-Length: must be a number of bytes")
        if int(declared) > drain_limit:
            raise _Refusal(413, f"body: larger than {max_bytes} bytes")
    body = bytearray()
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size <= max_bytes:
                body += chunk
            elif size > drain_limit:
                break
    except ClientDisconnect:
        # The client gave up (a timeout, a killed worker) before we read its body: like CM,
        # never place a call for an instruction that was not received whole.
        raise _Refusal(499, "client closed the request before its body was read") from None
    if size > max_bytes:
        raise _Refusal(413, f"body: larger than {max_bytes} bytes (got {size}+ bytes)")
    return bytes(body)


def _parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Refusal(400, f"body: malformed JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _Refusal(400, f"body: must be a JSON object, got {type(data).__name__}")
    return data


def _pydantic_refusal(exc: ValidationError) -> _Refusal:
    errors = [
        {"field": error.field, "rule": error.rule}
        for error in describe_validation_error(
            exc, name_field=lambda error: dotted_location(error) or "(body)"
        )
    ]
    message = "; ".join(f"{error['field']}: {error['rule']}" for error in errors)
    return _Refusal(400, message, extra={"errors": errors})


async def _read_control(request: Request, model: type[_Control], max_bytes: int) -> _Control:
    """A ``/_sim`` control body as ``model``, or a 4xx refusal naming what is wrong."""
    data = _parse_json_object(await _read_body(request, max_bytes))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_refusal(exc) from None


def _check_token(request: Request, accepted: tuple[str, ...]) -> None:
    token = request.headers.get(TOKEN_HEADER)
    if not token:
        raise _Refusal(401, f"{TOKEN_HEADER}: header missing; a product token is required")
    candidate = token.strip().lower().encode()
    # Compare against every token, in constant time, so timing tells nothing about any of them.
    matches = [hmac.compare_digest(candidate, known.encode()) for known in accepted]
    if not any(matches):
        raise _Refusal(401, f"{TOKEN_HEADER}: product token not accepted (value hidden)")


def _parse(kind: str, body: bytes) -> Instruction:
    try:
        return parse_instruction(kind, _parse_json_object(body))
    except InvalidInstruction as exc:
        errors = [
            {"field": error.field, "rule": error.rule, "value": error.value} for error in exc.errors
        ]
        message = "; ".join(str(error) for error in exc.errors)
        raise _Refusal(400, message, extra={"errors": errors}) from None


def _refusal_before_reading(fault: RequestFault, faults: Faults) -> _Refusal | None:
    """429 and 503: CM turns the request away without looking at it."""
    if fault is RequestFault.THROTTLED:
        return _Refusal(
            429,
            f"too many requests; retry after {faults.retry_after_s} s (simulated)",
            headers={"Retry-After": str(faults.retry_after_s)},
        )
    if fault is RequestFault.UNAVAILABLE:
        return _Refusal(503, "service unavailable (simulated)")
    return None


async def _ambiguous_failure(
    engine: SimulatorEngine, instruction: Instruction, fault: RequestFault
) -> Response:
    """500 and read timeouts: CM may have placed the call although the client cannot tell."""
    faults = engine.faults
    if fault is RequestFault.SERVER_ERROR:
        if faults.places_call(fault):
            engine.place(instruction, answered_with="500")
        raise _Refusal(500, "internal server error (simulated)")
    # A read timeout: the call is placed (or not) at once, like a CM whose answer is lost.
    queued = (
        engine.place(instruction, answered_with="timeout") if faults.places_call(fault) else None
    )
    await asyncio.sleep(faults.faults.hold_s)
    if queued is None:
        raise _Refusal(504, "gateway timeout (simulated); no call was placed")
    return JSONResponse(queued.to_payload())


def _voice_router(engine: SimulatorEngine) -> APIRouter:
    config = engine.config
    router = APIRouter()

    async def handle(kind: str, request: Request) -> Response:
        # Order: latency, token (401), faults that need no body (429, 503), size (413),
        # validation (400), a refused number (/_sim/refusals), then the faults that come after
        # CM accepted the body (500, timeout).
        faults = engine.faults
        if faults.latency_s:
            await asyncio.sleep(faults.latency_s)
        _check_token(request, config.tokens)
        fault = faults.request_fault()
        refusal = _refusal_before_reading(fault, faults.faults)
        if refusal is not None:
            engine.registry.faults_injected[str(fault)] += 1
            raise refusal
        instruction = _parse(kind, await _read_body(request, config.max_body_bytes))
        refused = engine.refusals.get(instruction.callee)
        if refused is not None:
            return JSONResponse(refused.answer(), status_code=refused.status)
        if fault is RequestFault.NONE:
            return JSONResponse(engine.place(instruction).to_payload())
        engine.registry.faults_injected[str(fault)] += 1
        return await _ambiguous_failure(engine, instruction, fault)

    @router.post(config.prefix + "/{app_path}")
    async def instruction(app_path: str, request: Request) -> Response:
        """Accept a Notification, OTP or DTMF instruction, as CM does."""
        kind = APP_KINDS.get(app_path.lower())
        try:
            if kind is None:
                raise _Refusal(
                    404,
                    f"unknown app {quote_value(app_path)}: the apps are "
                    + ", ".join(model.app for model in MODELS.values()),
                )
            response = await handle(kind, request)
        except _Refusal as refusal:
            response = refusal.response()
        app_name = MODELS[kind].app if kind else "(unknown)"
        engine.registry.count_response(app_name, str(response.status_code))
        return response

    return router


def _control_router(engine: SimulatorEngine) -> APIRouter:
    router = APIRouter(prefix="/_sim")

    @router.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, and how many calls are in progress."""
        return {"status": "ok", "calls-in-progress": engine.calls_in_progress}

    @router.get("/calls")
    async def calls(request: Request) -> Response:
        """Every placed call, filtered by ``instruction-id`` or ``callee`` when given."""
        query = request.query_params
        instruction_id = query.get("instruction-id") or query.get("instruction_id")
        callee = query.get("callee")
        if callee:
            try:
                callee = normalize_number(callee)
            except ValueError as exc:
                return _message(400, f"callee: {exc}")
        selected = engine.registry.select(instruction_id=instruction_id, callee=callee)
        return JSONResponse(
            {
                "count": len(selected),
                "calls": [call.to_json() for call in selected],
                "per-instruction-id": engine.registry.per_instruction_id(),
                "requests": engine.registry.stats()["requests"],
            }
        )

    @router.get("/stats")
    async def stats() -> dict[str, Any]:
        """Instruction POSTs by status and app, calls by result code, callbacks by status."""
        return {**engine.registry.stats(), "calls-in-progress": engine.calls_in_progress}

    @router.get("/faults")
    async def get_faults() -> dict[str, Any]:
        return engine.faults.faults.model_dump(mode="json")

    @router.post("/faults")
    async def set_faults(request: Request) -> Response:
        """Replace the faults: fields left out go back to no fault."""
        try:
            faults = await _read_control(request, Faults, engine.config.max_body_bytes)
        except _Refusal as refusal:
            return refusal.response()
        engine.faults.set(faults)
        return JSONResponse(faults.model_dump(mode="json"))

    @router.delete("/faults")
    async def clear_faults() -> dict[str, Any]:
        engine.faults.set(Faults())
        return engine.faults.faults.model_dump(mode="json")

    @router.get("/scenarios")
    async def get_scenarios() -> dict[str, Any]:
        return {"pending": engine.scenarios.pending()}

    @router.post("/scenarios")
    async def add_scenario(request: Request) -> Response:
        """Queue outcomes for the next calls to one number."""
        try:
            scenario = await _read_control(request, Scenario, engine.config.max_body_bytes)
        except _Refusal as refusal:
            return refusal.response()
        queued = engine.scenarios.add(scenario)
        return JSONResponse({"callee": scenario.callee, "queued": queued})

    @router.delete("/scenarios")
    async def clear_scenarios(request: Request) -> Response:
        """Clear every queued outcome, or only those of ``?callee=``."""
        try:
            callee = _callee_param(request)
        except _Refusal as refusal:
            return refusal.response()
        engine.scenarios.clear(callee)
        return JSONResponse({"pending": engine.scenarios.pending()})

    @router.get("/refusals")
    async def get_refusals() -> dict[str, Any]:
        return {"refused": engine.refusals.listed()}

    @router.post("/refusals")
    async def add_refusal(request: Request) -> Response:
        """Refuse every instruction to one number from now on (a 4xx, no call placed)."""
        try:
            refusal = await _read_control(request, Refusal, engine.config.max_body_bytes)
        except _Refusal as refusal_error:
            return refusal_error.response()
        engine.refusals.add(refusal)
        return JSONResponse(refusal.model_dump(mode="json"))

    @router.delete("/refusals")
    async def clear_refusals(request: Request) -> Response:
        """Clear every refusal, or only that of ``?callee=``."""
        try:
            callee = _callee_param(request)
        except _Refusal as refusal:
            return refusal.response()
        engine.refusals.clear(callee)
        return JSONResponse({"refused": engine.refusals.listed()})

    @router.post("/reset")
    async def reset() -> dict[str, Any]:
        """Hang up calls in progress; forget calls, scenarios, refusals, faults and counters."""
        await engine.reset()
        return {"reset": True}

    return router


async def _http_error(request: Request, exc: Exception) -> Response:
    # CM-style error bodies everywhere: {"message": ...}, never FastAPI's {"detail": ...}.
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
    )


def create_app(config: SimulatorConfig | None = None) -> FastAPI:
    """A simulator of CM's Voice API; serve it with uvicorn (or ``cmvoice.serving.ServerThread``).

    ``app.state.engine`` is its SimulatorEngine.
    """
    engine = SimulatorEngine(config or SimulatorConfig())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(
        title="cmvoice CM simulator",
        summary="A local stand-in for CM.com's Voice API: instructions in, callbacks out.",
        lifespan=lifespan,
        docs_url="/_sim/docs",
        openapi_url="/_sim/openapi.json",
        redoc_url=None,
    )
    app.state.engine = engine
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Control routes first: with an empty prefix, "/{app_path}" must not shadow them.
    app.include_router(_control_router(engine))
    app.include_router(_voice_router(engine))
    return app
