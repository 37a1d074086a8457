"""enqueue(): what a web app or a campaign calls to have an instruction placed exactly once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cmvoice.errors import FieldError, InvalidInstruction
from cmvoice.instructions import Instruction, infer_kind, parse_instruction
from cmvoice.messages import INTERACTIVE_QUEUE, dispatch_message
from cmvoice.outage import broker_boundary
from cmvoice.privacy import mask_number, quote_value
from cmvoice.rules.enforce import CallingRules
from cmvoice.runtime import Runtime, get_runtime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ticket:
    """Proof that an instruction is queued: its id, and whether this call created it."""

    instruction_id: str
    kind: str
    campaign_id: str | None = None
    created: bool = True


def prepare(
    instruction: Instruction | Mapping[str, Any], *, kind: str | None = None
) -> tuple[str, Instruction]:
    """Validate an instruction (a model or a mapping) and give it an instruction id."""
    if not isinstance(instruction, Mapping | Instruction):
        raise InvalidInstruction(
            kind or "unknown",
            [
                FieldError(
                    "instruction",
                    "must be a mapping of CM's fields or an instruction model "
                    "(NotificationInstruction, OtpInstruction, DtmfInstruction)",
                    f"a {type(instruction).__name__}",
                )
            ],
        )
    if isinstance(instruction, Mapping):
        kind = kind or infer_kind(instruction)
        instruction = parse_instruction(kind, instruction)
    elif kind is not None and kind != instruction.kind:
        raise InvalidInstruction(
            kind, [FieldError("kind", f"does not match a {instruction.kind} instruction", kind)]
        )
    if instruction.callback_url is not None:
        # cmvoice points CM at its own receiver with a signed URL; a URL of the user's would
        # bypass the ledger, the redial policy and the result tasks.
        raise InvalidInstruction(
            instruction.kind,
            [
                FieldError(
                    "callback-url",
                    "is set by cmvoice (a signed URL to its receiver); leave it empty and "
                    "receive outcomes with CMVOICE_RESULT_TASKS or @cmvoice.on_result",
                    quote_value(instruction.callback_url),
                )
            ],
        )
    if instruction.instruction_id is None:
        instruction = instruction.model_copy(update={"instruction_id": str(uuid.uuid4())})
    assert instruction.instruction_id is not None
    return instruction.instruction_id, instruction


def enqueue(
    instruction: Instruction | Mapping[str, Any],
    *,
    kind: str | None = None,
    respect_window: bool = False,
    expires_in: float | None = None,
    runtime: Runtime | None = None,
) -> Ticket:
    """Validate, record in the ledger, and publish ``cmvoice.dispatch(instruction_id)`` on the
    interactive lane (served before any campaign).

    Idempotent on the instruction id: enqueueing the same id again returns a Ticket with
    ``created=False`` and places no second call.

    Args:
        respect_window: hold the call until the calling window (CMVOICE_CALLING_WINDOW and
            CMVOICE_CALLING_DAYS) is open in the callee's time zones; by default an
            interactive call goes now, because someone asked for it now.
        expires_in: seconds after which the call is not placed any more (EXPIRED): an OTP
            that cannot ring within minutes is useless.

    Raises:
        InvalidInstruction: the instruction breaks a rule of CM's; nothing was queued.
        CallNotAllowed: a calling rule refuses it (suppressed, country, per-number limit);
            nothing was queued.
        BrokerUnavailable: Redis or the broker cannot be reached; the call may or may not be
            recorded: enqueue it again with the same instruction id.
    """
    runtime = runtime or get_runtime()
    instruction_id, model = prepare(instruction, kind=kind)
    settings = runtime.settings
    with broker_boundary(settings.effective_redis_url, settings.effective_broker_url):
        return _enqueue(runtime, instruction_id, model, respect_window, expires_in)


def _enqueue(
    runtime: Runtime,
    instruction_id: str,
    model: Instruction,
    respect_window: bool,
    expires_in: float | None,
) -> Ticket:
    if runtime.ledger.exists(instruction_id):
        # A retry of an enqueue that went through: not a second call, and not counted again.
        logger.info("instruction %s was already queued; not queued again", instruction_id)
        return Ticket(instruction_id, model.kind, None, created=False)
    rules = CallingRules(runtime)
    now_ms = runtime.ledger.server_time_ms()
    delay_s, held_by = rules.window_delay_s(model.callee, now_ms) if respect_window else (0.0, "")
    number = rules.admit_interactive(model.callee, instruction_id)
    extra: dict[str, str] = {"number_hash": number.number_hash, "zone_group": number.zone_group}
    if held_by:
        extra["held_by"] = held_by
    if expires_in is not None:
        if expires_in <= 0:
            raise InvalidInstruction(
                model.kind,
                [FieldError("expires_in", "must be a positive number of seconds", str(expires_in))],
            )
        extra["expires_at"] = str(now_ms + int(expires_in * 1000))
    if respect_window:
        extra["respect_window"] = "1"
    if expires_in is not None and delay_s > expires_in:
        # Held past its deadline: it is looked at when the deadline comes, and ends EXPIRED.
        delay_s = expires_in
    # With the ledger's Redis as broker, the dispatch message is pushed in the same step as the
    # record: nothing to lose in between, and no Celery to load for one message.
    push = None
    if not delay_s and runtime.settings.broker_is_ledger_redis:
        push = (INTERACTIVE_QUEUE, dispatch_message(instruction_id, INTERACTIVE_QUEUE))
    created = runtime.ledger.create(
        instruction_id, model.kind, model.to_payload(), extra=extra, due_in_s=delay_s, push=push
    )
    if not created:
        logger.info("instruction %s was already queued; not queued again", instruction_id)
        return Ticket(instruction_id, model.kind, None, created=False)
    if delay_s:
        # The window is closed now: the call waits in Redis, not in the broker, until it opens.
        runtime.schedule.add(instruction_id, delay_s)
    elif push is None:
        # Another broker: published through Celery (loaded only then).
        from cmvoice.publishing import Lane, publish_dispatch

        publish_dispatch([instruction_id], lane=Lane.INTERACTIVE)
    logger.info("queued %s call %s to %s", model.kind, instruction_id, mask_number(model.callee))
    return Ticket(instruction_id, model.kind, None, created=True)
