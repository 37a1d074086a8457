"""``cmvoice.handle_result``: record a callback, redial by policy, deliver the outcome.

Recording is one compare-and-set in the ledger (lua/finish.lua) that also creates the redial
and writes the deliveries, only if the record moved: a redelivered task, a duplicated or a
forged callback changes nothing twice (docs/architecture.md, "Results").
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from cmvoice import metrics
from cmvoice.calls import CallRecord, Delivery, FinishOutcome
from cmvoice.config import Settings
from cmvoice.delivery import outbox_member, stored_message
from cmvoice.errors import InvalidEvent
from cmvoice.events import CallQueued, DtmfFinished, FinishedEvent, parse_event
from cmvoice.messages import HANDLE_RESULT_TASK, RESULTS_QUEUE
from cmvoice.outcomes import CallOutcome, delivery_id_for, run_hooks
from cmvoice.publishing import envelope, publish_dispatch, publish_task
from cmvoice.runtime import Runtime, get_runtime
from cmvoice.schedule import MAX_COUNTDOWN_S
from cmvoice.worker import RETRY_ON_OUTAGE, app

logger = logging.getLogger(__name__)

#: Namespace of the deterministic ids of redials (uuid5 of the attempt they follow).
REDIAL_NAMESPACE = uuid.UUID("6f1c1c1e-6a43-4b8e-9a51-3c1f0c9a7d20")


def redial_id_for(instruction_id: str, call_id: str) -> str:
    """The id of the redial that follows call ``call_id`` of ``instruction_id``: always the same."""
    return str(uuid.uuid5(REDIAL_NAMESPACE, f"{instruction_id}/{call_id}"))


def redial_decision(settings: Settings, record: CallRecord, code: int) -> str | None:
    """Why no redial follows, or None when the policy asks for one (a pure decision)."""
    if code not in settings.redial_codes:
        return f"code {code} is not redialed"
    if record.get_int("attempt_no", 1) >= settings.redial_max_attempts:
        return f"attempt {record.get_int('attempt_no', 1)} was the last"
    if record.kind == "otp":
        # The OTP code was deleted when CM accepted the first call; it is not kept for redials.
        return "OTP calls are not redialed (their code is gone)"
    return None


def _event_fields(event: FinishedEvent) -> dict[str, str]:
    times = event.to_payload()
    fields = {
        "result_code": str(event.result.code),
        "result_description": event.result.description,
        "started_on": times.get("started-on", ""),
        "finished_on": times.get("finished-on", ""),
        "answered_on": times.get("answered-on") or "",
    }
    if event.result.sip_disconnect_code:
        fields["sip_disconnect_code"] = event.result.sip_disconnect_code
    if isinstance(event, DtmfFinished):
        fields["digits"] = event.digits
    return fields


def _deliveries(runtime: Runtime, outcome: CallOutcome) -> list[Delivery]:
    """One delivery per result task; pushed with the transition when the broker is this Redis."""
    settings = runtime.settings
    args = [outcome.to_dict()]
    deliveries = []
    for task_name in settings.result_tasks:
        queue, message = envelope(task_name, args, settings.result_queue)
        deliveries.append(
            Delivery(
                task_name=task_name,
                member=outbox_member(task_name, outcome.delivery_id),
                stored=stored_message(task_name, settings.result_queue, args),
                queue_key=queue,
                envelope=message if settings.broker_is_ledger_redis else "",
            )
        )
    return deliveries


def handle_event(runtime: Runtime, data: dict[str, Any]) -> str:
    """Handle one callback event (a dict without phone numbers); returns what was done."""
    # The receiver keeps numbers out of task arguments; the models want a callee field.
    finished = parse_event({"callee": "", **data})
    if isinstance(finished, CallQueued):
        raise InvalidEvent("handle_result takes *-finished events, not call-queued")
    iid = finished.instruction_id or ""
    code = finished.result.code
    record = runtime.ledger.get(iid)
    if record is None:
        logger.warning("callback for %s: no such instruction in the ledger", iid)
        runtime.redis.zrem(runtime.keys.inbox(), iid)
        return "missing: no such instruction"
    settings = runtime.settings
    no_redial = redial_decision(settings, record, code)
    next_id = None if no_redial else redial_id_for(iid, finished.call_id)
    times = finished.to_payload()
    outcome = CallOutcome(
        instruction_id=iid,
        root_instruction_id=record.get("root_id") or iid,
        kind=record.kind,
        attempt=record.get_int("attempt_no", 1),
        final=next_id is None,
        result_code=code,
        description=finished.result.description,
        call_id=finished.call_id,
        digits=finished.digits if isinstance(finished, DtmfFinished) else None,
        started_on=times.get("started-on"),
        answered_on=times.get("answered-on"),
        finished_on=times.get("finished-on"),
        campaign_id=record.campaign_id,
        redial_instruction_id=next_id,
        delivery_id=delivery_id_for(iid, finished.call_id),
    )
    deliveries = _deliveries(runtime, outcome)
    recorded = runtime.ledger.finish(
        iid,
        finished.call_id,
        _event_fields(finished),
        slots_key=runtime.limits.slots_key,
        redial=(next_id, settings.redial_delay) if next_id else None,
        schedule_redial=settings.redial_delay > MAX_COUNTDOWN_S,
        deliveries=deliveries,
        outbox_timeout_s=settings.outbox_timeout,
    )
    if recorded is not FinishOutcome.RECORDED:
        runtime.redis.zrem(runtime.keys.inbox(), iid)
        if recorded is FinishOutcome.MISMATCH:
            logger.warning("callback for %s: call-id is not the one CM gave; ignored", iid)
            return "refused: the call-id is not the one CM gave"
        # A duplicate callback or a redelivered task: the first one did the rest.
        return f"{recorded.value}: nothing changed"
    metrics.count_outcome(code)
    if next_id and not record.campaign_id and settings.redial_delay <= MAX_COUNTDOWN_S:
        # A longer wait is in the Redis schedule already (finish.lua); a short one is a
        # countdown. Lost, the reconciler finds the redial QUEUED and overdue.
        publish_dispatch([next_id], countdown_s=settings.redial_delay)
    if not settings.broker_is_ledger_redis:
        # Another broker: published after the transition. Lost by a crash here, they stay in
        # the outbox and the reconciler publishes them after the outbox timeout.
        for delivery in deliveries:
            publish_task(delivery.task_name, [outcome.to_dict()], delivery.queue_key)
    run_hooks(outcome)
    final = (
        "final" if next_id is None else f"redial {next_id} in {_duration(settings.redial_delay)}"
    )
    logger.info("callback for %s: code %s recorded (%s)", iid, code, final)
    return f"outcome {code} {finished.result.description} ({final})"


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


@app.task(name=HANDLE_RESULT_TASK, queue=RESULTS_QUEUE, acks_late=True, **RETRY_ON_OUTAGE)
def handle_result(event: dict[str, Any]) -> str:
    """Record a CM callback in the ledger, redial by policy, deliver the outcome."""
    return handle_event(get_runtime(), event)
