"""``cmvoice.handle_result``: record a callback, redial by policy, deliver the outcome once.

Every step is idempotent, so a redelivered task or a duplicated callback changes nothing twice:
the ledger's FINISHED transition is a compare-and-set, the redial's id is derived from the call
it follows, and delivery is guarded by a set-if-absent key.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from cmvoice.errors import InvalidEvent
from cmvoice.events import CallQueued, DtmfFinished, FinishedEvent, parse_event
from cmvoice.ledger import CallRecord, FinishOutcome
from cmvoice.outcomes import CallOutcome, run_hooks
from cmvoice.producer import dispatch_later
from cmvoice.runtime import Runtime, get_runtime
from cmvoice.worker import HANDLE_RESULT_TASK, RESULTS_QUEUE, RETRY_ON_OUTAGE, app

logger = logging.getLogger(__name__)

#: Namespace of the deterministic ids of redials (uuid5 of the attempt they follow).
REDIAL_NAMESPACE = uuid.UUID("6f1c1c1e-6a43-4b8e-9a51-3c1f0c9a7d20")


def redial_id_for(instruction_id: str, call_id: str) -> str:
    """The id of the redial that follows call ``call_id`` of ``instruction_id``: always the same."""
    return str(uuid.uuid5(REDIAL_NAMESPACE, f"{instruction_id}/{call_id}"))


def _event_fields(event: FinishedEvent) -> dict[str, str]:
    fields = {
        "result_code": str(event.result.code),
        "result_description": event.result.description,
        "started_on": event.to_payload().get("started-on", ""),
        "finished_on": event.to_payload().get("finished-on", ""),
        "answered_on": event.to_payload().get("answered-on") or "",
    }
    if event.result.sip_disconnect_code:
        fields["sip_disconnect_code"] = event.result.sip_disconnect_code
    if isinstance(event, DtmfFinished):
        fields["digits"] = event.digits
    return fields


def _redial(runtime: Runtime, record: CallRecord, event: FinishedEvent) -> str | None:
    """Queue the next attempt if the policy asks for one; returns its id."""
    settings = runtime.settings
    attempt = record.get_int("attempt_no", 1)
    if event.result.code not in settings.redial_codes:
        return None
    if attempt >= settings.redial_max_attempts:
        return None
    if record.kind == "otp":
        # The OTP code was deleted when CM accepted the first call; it is not kept for redials.
        logger.info("call %s: not redialing an OTP call (its code is gone)", record.instruction_id)
        return None
    root = record.get("root_id") or record.instruction_id
    next_id = redial_id_for(record.instruction_id, event.call_id)
    payload = {**record.payload, "instruction-id": next_id}
    created = runtime.ledger.create(
        next_id,
        record.kind,
        payload,
        campaign_id=record.campaign_id,
        extra={
            "root_id": root,
            "attempt_no": str(attempt + 1),
            "previous_id": record.instruction_id,
        },
        due_in_s=settings.redial_delay,
    )
    runtime.redis.hset(runtime.ledger.key(record.instruction_id), "next_id", next_id)
    if created:
        dispatch_later(runtime, next_id, settings.redial_delay)
        logger.info(
            "call %s: result %s, redial %s (attempt %d) in %.0fs",
            record.instruction_id,
            event.result.code,
            next_id,
            attempt + 1,
            settings.redial_delay,
        )
    return next_id


def _deliver(runtime: Runtime, outcome: CallOutcome) -> bool:
    """Send the outcome to the result tasks and hooks, once per call attempt."""
    guard = f"cmvoice:delivered:{outcome.instruction_id}:{outcome.call_id}"
    if not runtime.redis.set(guard, "1", nx=True, ex=int(runtime.settings.retention)):
        return False
    try:
        with app.producer_or_acquire() as producer:
            for task_name in runtime.settings.result_tasks:
                app.send_task(
                    task_name,
                    args=[outcome.to_dict()],
                    queue=runtime.settings.result_queue,
                    producer=producer,
                )
    except Exception:
        # Not sent (the broker is down): forget the guard, so that the task's retry delivers.
        runtime.redis.delete(guard)
        raise
    run_hooks(outcome)
    return True


def handle_event(runtime: Runtime, data: dict[str, Any]) -> str:
    """Handle one callback event (a dict without phone numbers); returns what was done."""
    # The receiver keeps numbers out of task arguments; the models want a callee field.
    finished = parse_event({"callee": "", **data})
    if isinstance(finished, CallQueued):
        raise InvalidEvent("handle_result takes *-finished events, not call-queued")
    iid = finished.instruction_id or ""
    outcome_of_finish = runtime.ledger.finish(iid, finished.call_id, _event_fields(finished))
    if outcome_of_finish is FinishOutcome.MISSING:
        logger.warning("callback for %s: no such instruction in the ledger", iid)
        return "missing"
    runtime.slots.release(iid)
    record = runtime.ledger.get(iid)
    if record is None:  # expired between the two reads
        return "missing"
    next_id = _redial(runtime, record, finished)
    outcome = CallOutcome(
        instruction_id=iid,
        root_instruction_id=record.get("root_id") or iid,
        kind=record.kind,
        attempt=record.get_int("attempt_no", 1),
        final=next_id is None,
        result_code=finished.result.code,
        description=finished.result.description,
        call_id=finished.call_id,
        digits=finished.digits if isinstance(finished, DtmfFinished) else None,
        started_on=record.get("started_on") or None,
        answered_on=record.get("answered_on") or None,
        finished_on=record.get("finished_on") or None,
        campaign_id=record.campaign_id,
        redial_instruction_id=next_id,
    )
    delivered = _deliver(runtime, outcome)
    logger.info(
        "callback for %s: code %s (%s)%s",
        iid,
        finished.result.code,
        outcome_of_finish.value,
        "" if delivered else ", outcome already delivered",
    )
    return outcome_of_finish.value


@app.task(name=HANDLE_RESULT_TASK, queue=RESULTS_QUEUE, acks_late=True, **RETRY_ON_OUTAGE)
def handle_result(event: dict[str, Any]) -> str:
    """Record a CM callback in the ledger, redial by policy, deliver the outcome."""
    return handle_event(get_runtime(), event)
