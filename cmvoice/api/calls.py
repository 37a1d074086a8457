"""``/v1/calls``: enqueue one call (idempotent on its instruction id) and follow it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from cmvoice.api.auth import require_api_key
from cmvoice.api.problems import ApiProblem, error_responses, problem, read_body, request_errors
from cmvoice.bounded_json import JsonLimitExceeded, loads_bounded
from cmvoice.calls import CallRecord
from cmvoice.campaigns.window_wait import describe_attempt
from cmvoice.errors import CallNotAllowed, FieldError, InvalidInstruction
from cmvoice.producer import Ticket, enqueue
from cmvoice.records import OUTCOME_FIELDS as RECORD_OUTCOME_FIELDS
from cmvoice.records import attempt_chain
from cmvoice.runtime import Runtime

#: Largest JSON body accepted; CM's longest instruction is a few kilobytes.
MAX_JSON_BODY_BYTES = 64 * 1024
#: Fields of the last attempt that make up a call's outcome, when present.
OUTCOME_FIELDS = ("state", *RECORD_OUTCOME_FIELDS)


class CallRequest(BaseModel):
    """``POST /v1/calls``: one instruction of CM's and how to queue it."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["notification", "otp", "dtmf"]
    instruction: dict[str, Any] = Field(
        description="CM's fields, hyphenated (min-digits) or snake_case (min_digits); "
        "instruction-id is the idempotency key (a new UUID when left out)."
    )
    respect_window: bool = Field(
        default=False, description="Hold the call until the calling window is open."
    )
    expires_in: float | None = Field(
        default=None, gt=0, description="Seconds after which the call is not placed any more."
    )


class CallAccepted(BaseModel):
    """The answer to ``POST /v1/calls``: 202 when created, 200 when the id was known."""

    instruction_id: str
    kind: str
    created: bool


class CallStatus(BaseModel):
    """Where a call stands: its last attempt's state, every attempt, and the outcome."""

    instruction_id: str
    kind: str
    state: str = Field(description="The state of the call's last attempt.")
    attempts: int = Field(description="Attempts so far: 1, plus one per redial.")
    outcome: dict[str, Any] | None = Field(
        description="The last attempt's result once it ended; null while the call goes on."
    )
    attempt_chain: list[dict[str, Any]] = Field(
        description="Each attempt's ledger record, first to last, numbers masked."
    )


def calls_router(runtime_factory: Callable[[], Runtime]) -> APIRouter:
    router = APIRouter(prefix="/v1/calls", tags=["calls"], dependencies=[Depends(require_api_key)])

    @router.post(
        "",
        status_code=202,
        response_model=CallAccepted,
        responses={
            200: {"model": CallAccepted, "description": "The instruction id was known already"},
            **error_responses(401, 413, 422, 503),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": CallRequest.model_json_schema()}},
            }
        },
        summary="Enqueue one call",
    )
    async def create_call(request: Request) -> JSONResponse:
        """Validate the instruction and queue it; an instruction id already known is not
        queued again (200, ``created: false``), so a retried request places no second call."""
        body = await read_body(request, MAX_JSON_BODY_BYTES)
        call = _parse_call_request(body)
        ticket = await run_in_threadpool(_enqueue, call, runtime_factory())
        answer = CallAccepted(
            instruction_id=ticket.instruction_id, kind=ticket.kind, created=ticket.created
        )
        return JSONResponse(answer.model_dump(), status_code=202 if ticket.created else 200)

    @router.get(
        "/{instruction_id}",
        response_model=CallStatus,
        responses=error_responses(401, 404, 503),
        summary="A call's state, attempts and outcome",
    )
    def call_status(instruction_id: str) -> CallStatus:
        """Numbers masked, never an OTP code."""
        runtime = runtime_factory()
        record = runtime.ledger.get(instruction_id)
        if record is None:
            raise problem(404, "instruction_id", "no such call (unknown, or expired)", "")
        chain = attempt_chain(runtime.ledger, instruction_id) or [record]  # [] if just expired
        return _status(record, [describe_attempt(runtime, attempt) for attempt in chain], chain)

    return router


def _parse_call_request(body: bytes) -> CallRequest:
    try:
        data = loads_bounded(body)
    except JsonLimitExceeded as exc:
        raise problem(422, "body", str(exc)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise problem(422, "body", f"is not JSON: {exc}") from None
    if not isinstance(data, dict):
        rule = "must be a JSON object with kind and instruction"
        raise problem(422, "body", rule, f"a {type(data).__name__}")
    try:
        return CallRequest.model_validate(data)
    except ValidationError as exc:
        raise ApiProblem(422, request_errors(exc)) from None


def _enqueue(call: CallRequest, runtime: Runtime) -> Ticket:
    try:
        return enqueue(
            call.instruction,
            kind=call.kind,
            respect_window=call.respect_window,
            expires_in=call.expires_in,
            runtime=runtime,
        )
    except InvalidInstruction as exc:
        # The instruction's own fields, named as in the request's body (values already masked).
        errors = [FieldError(f"instruction.{e.field}", e.rule, e.value) for e in exc.errors]
        raise ApiProblem(422, errors) from None
    except CallNotAllowed as exc:
        rule = f"{exc.rule}: {exc.reason}"
        raise problem(422, f"instruction.{exc.field}", rule, exc.value) from None


def _status(
    record: CallRecord, attempts: list[dict[str, Any]], chain: list[CallRecord]
) -> CallStatus:
    last = attempts[-1]
    ended = chain[-1].state.is_terminal
    return CallStatus(
        instruction_id=record.instruction_id,
        kind=record.kind,
        state=last["state"],
        attempts=len(attempts),
        outcome={name: last[name] for name in OUTCOME_FIELDS if name in last} if ended else None,
        attempt_chain=attempts,
    )
