"""enqueue(): what a web app or a campaign calls to have an instruction placed exactly once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cmvoice.errors import FieldError, InvalidInstruction
from cmvoice.instructions import Instruction, infer_kind, parse_instruction
from cmvoice.privacy import mask_number, quote_value
from cmvoice.publisher import DispatchPublisher
from cmvoice.runtime import Runtime, get_runtime
from cmvoice.schedule import MAX_COUNTDOWN_S
from cmvoice.worker import DISPATCH_QUEUE, DISPATCH_TASK, app

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ticket:
    """Proof that an instruction is queued: its id, and whether this call created it."""

    instruction_id: str
    kind: str
    campaign_id: str | None = None
    created: bool = True


def publish_dispatch(instruction_ids: Iterable[str], *, countdown_s: float = 0.0) -> None:
    """Publish one ``cmvoice.dispatch`` message per id (the id is the only argument)."""
    ids = list(instruction_ids)
    if not countdown_s:
        with DispatchPublisher() as publisher:
            publisher.publish(ids)
        return
    with app.producer_or_acquire() as producer:
        for instruction_id in ids:
            app.send_task(
                DISPATCH_TASK,
                args=[instruction_id],
                queue=DISPATCH_QUEUE,
                countdown=countdown_s,
                producer=producer,
                # No result to wait for: the ledger has it. Saves a result-backend subscription.
                ignore_result=True,
            )


def dispatch_later(runtime: Runtime, instruction_id: str, delay_s: float) -> None:
    """Dispatch again after ``delay_s``: a countdown when short, the Redis schedule when long."""
    if delay_s <= MAX_COUNTDOWN_S:
        publish_dispatch([instruction_id], countdown_s=delay_s)
    else:
        runtime.schedule.add(instruction_id, delay_s)


def prepare(
    instruction: Instruction | Mapping[str, Any], *, kind: str | None = None
) -> tuple[str, Instruction]:
    """Validate an instruction (a model or a mapping) and give it an instruction id."""
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
    campaign_id: str | None = None,
    runtime: Runtime | None = None,
) -> Ticket:
    """Validate, record in the ledger, and publish ``cmvoice.dispatch(instruction_id)``.

    Idempotent on the instruction id: enqueueing the same id again returns a Ticket with
    ``created=False`` and places no second call.

    Raises:
        InvalidInstruction: the instruction breaks a rule; nothing was queued.
    """
    runtime = runtime or get_runtime()
    instruction_id, model = prepare(instruction, kind=kind)
    created = runtime.ledger.create(
        instruction_id, model.kind, model.to_payload(), campaign_id=campaign_id
    )
    if created:
        publish_dispatch([instruction_id])
        logger.info(
            "queued %s call %s to %s", model.kind, instruction_id, mask_number(model.callee)
        )
    else:
        logger.info("instruction %s was already queued; not queued again", instruction_id)
    return Ticket(instruction_id, model.kind, campaign_id, created=created)
