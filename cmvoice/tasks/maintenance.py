"""``cmvoice.reconcile``: finds calls whose worker or message was lost, and moves them on.

Run periodically by beat (``cmvoice worker --beat``). Every step is a compare-and-set in the
ledger and a duplicate dispatch message is harmless, so two reconcilers at once are safe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kombu.exceptions import ChannelError

from cmvoice.ledger import CallState
from cmvoice.producer import publish_dispatch
from cmvoice.runtime import Runtime, get_runtime
from cmvoice.worker import DISPATCH_QUEUE, RECONCILE_TASK, app

logger = logging.getLogger(__name__)

#: Records handled per state in one pass: bounded work, the next pass does the rest.
BATCH = 500


@dataclass
class ReconcileReport:
    """What one pass did."""

    requeued_unsent: int = 0
    unknown_after_crash: int = 0
    unknown_failed: int = 0
    unknown_redialed: int = 0
    republished: int = 0
    no_callback: int = 0
    scheduled: int = 0

    def total(self) -> int:
        return sum(vars(self).values())


def dispatch_queue_length() -> int | None:
    """Messages waiting in the dispatch queue, or None when the broker cannot say."""
    try:
        with app.connection_for_read() as connection:
            channel: Any = connection.default_channel
            declared = channel.queue_declare(queue=DISPATCH_QUEUE, passive=True)
            return int(declared.message_count)
    except ChannelError:
        # A passive declare of a queue that does not exist: Redis drops empty lists.
        return 0
    except Exception:  # any broker error: just skip the step that needs the number
        logger.debug("could not read the dispatch queue length", exc_info=True)
        return None


def reconcile(runtime: Runtime) -> ReconcileReport:
    """One pass over the ledger's DISPATCHING, UNKNOWN and QUEUED indexes and the schedule."""
    report = ReconcileReport()
    ledger = runtime.ledger
    settings = runtime.settings
    now = ledger.server_time_ms()

    # 1. A dispatch whose lease expired: its worker died. Before the POST went out, it is safe
    #    to send again; after, CM may have placed the call, so it becomes UNKNOWN.
    for iid in ledger.ids_in(CallState.DISPATCHING, max_score_ms=now, limit=BATCH):
        record = ledger.get(iid)
        if record is None or record.state is not CallState.DISPATCHING:
            continue
        if record.get_int("lease_until") > now:
            continue
        if record.get("sent") == "1":
            moved, _ = ledger.transition(
                iid,
                CallState.UNKNOWN,
                allowed=(CallState.DISPATCHING,),
                token=record.get("claim"),
                fields={"last_error": "worker lost while the POST was in flight"},
            )
            report.unknown_after_crash += moved
        else:
            moved, _ = ledger.transition(
                iid,
                CallState.QUEUED,
                allowed=(CallState.DISPATCHING,),
                token=record.get("claim"),
                fields={"last_error": "worker lost before sending; requeued"},
            )
            if moved:
                runtime.slots.release(iid)
                publish_dispatch([iid])
                report.requeued_unsent += 1

    # 2. UNKNOWN with no callback in time: the configured policy.
    deadline = now - int(settings.unknown_timeout * 1000)
    for iid in ledger.ids_in(CallState.UNKNOWN, max_score_ms=deadline, limit=BATCH):
        if settings.unknown_policy == "redial":
            moved, _ = ledger.transition(
                iid,
                CallState.QUEUED,
                allowed=(CallState.UNKNOWN,),
                fields={"last_error": "outcome unknown; dispatched again by policy"},
            )
            if moved:
                publish_dispatch([iid])
                report.unknown_redialed += 1
        else:
            moved, _ = ledger.transition(
                iid,
                CallState.FAILED,
                allowed=(CallState.UNKNOWN,),
                fields={"last_error": "outcome unknown: no callback within the unknown timeout"},
            )
            if moved:
                runtime.slots.release(iid)
                report.unknown_failed += 1

    # 3. PLACED with no callback for too long: CM's callback was lost. The outcome is not
    #    known, but the call is over; a callback arriving later still settles it (FINISHED).
    silent_since = now - int(settings.callback_timeout * 1000)
    for iid in ledger.ids_in(CallState.PLACED, max_score_ms=silent_since, limit=BATCH):
        moved, _ = ledger.transition(
            iid,
            CallState.FAILED,
            allowed=(CallState.PLACED,),
            fields={"last_error": "placed, but no callback from CM within the callback timeout"},
        )
        if moved:
            runtime.slots.release(iid)
            report.no_callback += 1

    # 4. QUEUED long past due while the queue is empty: the message was lost (a worker killed
    #    with it prefetched, a broker restarted without it). Republish; the claim dedupes.
    overdue = now - int(settings.requeue_grace * 1000)
    stale = ledger.ids_in(CallState.QUEUED, max_score_ms=overdue, limit=BATCH)
    if stale and dispatch_queue_length() == 0:
        publish_dispatch(stale)
        report.republished += len(stale)

    # 5. Dispatches due from the schedule (long waits, redials).
    due = runtime.schedule.pop_due(BATCH)
    if due:
        publish_dispatch(due)
        report.scheduled += len(due)

    if report.total():
        logger.info("reconcile: %s", report)
    return report


@app.task(name=RECONCILE_TASK, ignore_result=True)
def reconcile_task() -> dict[str, int]:
    """Periodic reconciliation (beat)."""
    return vars(reconcile(get_runtime()))
