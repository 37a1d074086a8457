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
from cmvoice.ledger import CallRecord, CallState, FinishOutcome
from cmvoice.outcomes import CallOutcome, run_hooks
from cmvoice.producer import dispatch_later
from cmvoice.publisher import redis_queue_message
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


def _plan_redial(runtime: Runtime, record: CallRecord, event: FinishedEvent) -> str | None:
    """Write the next attempt's record if the policy asks for one; returns its id.

    Idempotent (the id derives from the call it follows); it is dispatched only once the
    callback is recorded.
    """
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
    next_id = redial_id_for(record.instruction_id, event.call_id)
    runtime.ledger.create(
        next_id,
        record.kind,
        {**record.payload, "instruction-id": next_id},
        campaign_id=record.campaign_id,
        extra={
            "root_id": record.get("root_id") or record.instruction_id,
            "attempt_no": str(attempt + 1),
            "previous_id": record.instruction_id,
        },
        due_in_s=settings.redial_delay,
    )
    return next_id


def _outbox(runtime: Runtime, outcome: CallOutcome) -> list[tuple[str, bytes]] | None:
    """The result-task messages to push with the FINISHED transition, when that can be atomic.

    It can when the broker is the ledger's Redis (the default): the messages then go out
    exactly once, with the transition. Otherwise None: they are published after it.
    """
    settings = runtime.settings
    if not settings.effective_broker_url.startswith("redis"):
        return None
    if settings.effective_broker_url != settings.effective_redis_url:
        return None
    args = [outcome.to_dict()]
    return [
        redis_queue_message(name, args, settings.result_queue) for name in settings.result_tasks
    ]


def _deliver(runtime: Runtime, outcome: CallOutcome) -> bool:
    """Publish the outcome to the result tasks, once per call attempt (another broker).

    At most once: a worker killed between the guard and the publish loses the delivery; with
    the ledger's Redis as the broker the outbox makes it exactly once instead.
    """
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
    return True


def handle_event(runtime: Runtime, data: dict[str, Any]) -> str:
    """Handle one callback event (a dict without phone numbers); returns what was done."""
    # The receiver keeps numbers out of task arguments; the models want a callee field.
    finished = parse_event({"callee": "", **data})
    if isinstance(finished, CallQueued):
        raise InvalidEvent("handle_result takes *-finished events, not call-queued")
    iid = finished.instruction_id or ""
    record = runtime.ledger.get(iid)
    if record is None:
        logger.warning("callback for %s: no such instruction in the ledger", iid)
        return FinishOutcome.MISSING.value
    if record.state is CallState.FINISHED and record.call_id in (None, finished.call_id):
        runtime.slots.release(iid)
        return FinishOutcome.DUPLICATE.value
    next_id = _plan_redial(runtime, record, finished)
    times = finished.to_payload()
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
        started_on=times.get("started-on"),
        answered_on=times.get("answered-on"),
        finished_on=times.get("finished-on"),
        campaign_id=record.campaign_id,
        redial_instruction_id=next_id,
    )
    fields = _event_fields(finished)
    if next_id:
        fields["next_id"] = next_id
    outbox = _outbox(runtime, outcome)
    recorded = runtime.ledger.finish(iid, finished.call_id, fields, outbox=outbox or ())
    runtime.slots.release(iid)
    if recorded is not FinishOutcome.RECORDED:
        # A duplicate callback or a redelivered task: the first one did the rest.
        return recorded.value
    if next_id:
        dispatch_later(runtime, next_id, runtime.settings.redial_delay)
        logger.info("call %s: result %s, redial %s", iid, finished.result.code, next_id)
    if outbox is None:
        _deliver(runtime, outcome)
    run_hooks(outcome)
    logger.info("callback for %s: code %s recorded", iid, finished.result.code)
    return recorded.value


@app.task(name=HANDLE_RESULT_TASK, queue=RESULTS_QUEUE, acks_late=True, **RETRY_ON_OUTAGE)
def handle_result(event: dict[str, Any]) -> str:
    """Record a CM callback in the ledger, redial by policy, deliver the outcome."""
    return handle_event(get_runtime(), event)
