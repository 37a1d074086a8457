"""``cmvoice.reconcile``: finds calls, messages and deliveries that were lost, and moves them on.

Run periodically by beat (``cmvoice worker --beat``). Each step is a pure decision about one
record (unit-tested) applied as one compare-and-set in the ledger; a duplicate message is
harmless (the claim dedupes), so two reconcilers at once are safe.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from kombu.exceptions import ChannelError

from cmvoice.calls import CallRecord, CallState
from cmvoice.config import Settings
from cmvoice.delivery import MAX_DELIVERIES
from cmvoice.messages import (
    DISPATCH_QUEUE,
    HANDLE_RESULT_TASK,
    INTERACTIVE_QUEUE,
    RECONCILE_TASK,
    RESULTS_QUEUE,
)
from cmvoice.publishing import Lane, envelope, publish_dispatch, publish_task
from cmvoice.replies import as_text
from cmvoice.runtime import Runtime, get_runtime
from cmvoice.worker import app

logger = logging.getLogger(__name__)

#: Records handled per step in one pass: bounded work, the next pass does the rest.
BATCH = 500


@dataclass(frozen=True)
class Move:
    """What a step does with one record: the transition, and what follows it."""

    to: CallState
    reason: str
    free_slot: bool = False
    #: Wait in Redis again (a campaign's backlog), instead of expecting a dispatch message.
    park: bool = False
    #: Publish a dispatch on this lane once moved.
    publish: Lane | None = None
    fields: dict[str, str] = field(default_factory=dict)


def after_lost_lease(record: CallRecord) -> Move:
    """A dispatch whose lease ran out: its worker died. Before the POST went out it is safe to
    send again; after, CM may have placed the call, so its outcome is unknown."""
    if record.get("sent") == "1":
        return Move(CallState.UNKNOWN, "worker lost while the POST was in flight")
    return _again(record, "worker lost before sending; queued again", free_slot=True)


def after_unknown_timeout(record: CallRecord, settings: Settings) -> Move:
    """No callback came for a call whose POST may or may not have placed it: the policy."""
    if settings.unknown_policy == "redial":
        return _again(record, "outcome unknown; dispatched again by policy", free_slot=False)
    return Move(
        CallState.FAILED,
        "outcome unknown: no callback within the unknown timeout",
        free_slot=True,
    )


def after_silent_placed() -> Move:
    """PLACED with no callback for too long: CM's callback was lost. The outcome is not known,
    but the call is over; a callback arriving later still settles it (FINISHED)."""
    return Move(
        CallState.FAILED,
        "placed, but no callback from CM within the callback timeout",
        free_slot=True,
    )


def released_again(record: CallRecord | None) -> bool:
    """A campaign call the pacer released and no dispatch claimed: published again while it is
    still QUEUED and released; forgotten once settled, gone, or waiting in its backlog again."""
    return record is not None and record.state is CallState.QUEUED and not record.get("waiting")


def next_delivery(message: dict[str, Any]) -> dict[str, Any] | None:
    """An unconfirmed outcome's outbox message, counted one delivery more; None once it was
    published MAX_DELIVERIES times (a result task that never confirms is given up on)."""
    published = int(message.get("published", 1))
    if published >= MAX_DELIVERIES:
        return None
    return {**message, "published": published + 1}


def _again(record: CallRecord, reason: str, *, free_slot: bool) -> Move:
    if record.campaign_id:
        return Move(CallState.QUEUED, reason, free_slot=True, park=True)
    return Move(CallState.QUEUED, reason, free_slot=free_slot, publish=Lane.INTERACTIVE)


@dataclass
class ReconcileReport:
    """What one pass did."""

    requeued_unsent: int = 0
    unknown_after_crash: int = 0
    unknown_failed: int = 0
    unknown_redialed: int = 0
    no_callback: int = 0
    republished: int = 0
    scheduled: int = 0
    callbacks_again: int = 0
    deliveries_again: int = 0
    deliveries_given_up: int = 0

    def total(self) -> int:
        return sum(vars(self).values())


def dispatch_queue_length() -> int | None:
    """Messages waiting in the dispatch lanes, or None when the broker cannot say."""
    total = 0
    try:
        with app.connection_for_read() as connection:
            channel: Any = connection.default_channel
            for queue in (INTERACTIVE_QUEUE, DISPATCH_QUEUE):
                try:
                    total += int(channel.queue_declare(queue=queue, passive=True).message_count)
                except ChannelError:
                    # A passive declare of a queue that does not exist: Redis drops empty lists.
                    channel = connection.channel()
    except Exception:  # any broker error: just skip the step that needs the number
        logger.debug("could not read the dispatch queue length", exc_info=True)
        return None
    return total


class Reconciler:
    """One pass over the ledger's indexes, the released calls, the schedule, inbox and outbox."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.ledger = runtime.ledger
        self.settings = runtime.settings
        self.keys = runtime.keys

    def apply(self, record: CallRecord, move: Move, allowed: tuple[CallState, ...]) -> bool:
        """Apply one step's move to its record, as one compare-and-set; True if it moved."""
        moved, _ = self.ledger.transition(
            record.instruction_id,
            move.to,
            allowed=allowed,
            token=record.get("claim") if CallState.DISPATCHING in allowed else "",
            fields={"last_error": move.reason, **move.fields},
            slots_key=self.runtime.limits.slots_key if move.free_slot else "",
            park=move.reason if move.park else "",
        )
        if moved and move.publish is not None:
            publish_dispatch([record.instruction_id], lane=move.publish)
        return moved

    def run(self) -> ReconcileReport:
        report = ReconcileReport()
        now = self.ledger.server_time_ms()
        self._lost_leases(now, report)
        self._unknown(now, report)
        self._silent_placed(now, report)
        self._lost_messages(now, report)
        due = self.runtime.schedule.pop_due(BATCH)
        if due:
            publish_dispatch(due, lane=Lane.INTERACTIVE)
            report.scheduled += len(due)
        self._inbox(now, report)
        self._outbox(now, report)
        if report.total():
            logger.info("reconcile: %s", report)
        return report

    def _records(self, state: CallState, max_score_ms: int) -> list[CallRecord]:
        ids = self.ledger.ids_in(state, max_score_ms=max_score_ms, limit=BATCH)
        records = (self.ledger.get(iid) for iid in ids)
        return [r for r in records if r is not None and r.state is state]

    def _lost_leases(self, now: int, report: ReconcileReport) -> None:
        for record in self._records(CallState.DISPATCHING, now):
            if record.get_int("lease_until") > now:
                continue
            move = after_lost_lease(record)
            if self.apply(record, move, (CallState.DISPATCHING,)):
                if move.to is CallState.UNKNOWN:
                    report.unknown_after_crash += 1
                else:
                    report.requeued_unsent += 1

    def _unknown(self, now: int, report: ReconcileReport) -> None:
        deadline = now - int(self.settings.unknown_timeout * 1000)
        for record in self._records(CallState.UNKNOWN, deadline):
            move = after_unknown_timeout(record, self.settings)
            if self.apply(record, move, (CallState.UNKNOWN,)):
                if move.to is CallState.FAILED:
                    report.unknown_failed += 1
                else:
                    report.unknown_redialed += 1

    def _silent_placed(self, now: int, report: ReconcileReport) -> None:
        silent_since = now - int(self.settings.callback_timeout * 1000)
        for record in self._records(CallState.PLACED, silent_since):
            report.no_callback += self.apply(record, after_silent_placed(), (CallState.PLACED,))

    def _lost_messages(self, now: int, report: ReconcileReport) -> None:
        """QUEUED long past due while the dispatch lanes are empty: the message was lost (a
        worker killed with it prefetched or just popped, a broker restarted without it)."""
        overdue = now - int(self.settings.requeue_grace * 1000)
        stale = self.ledger.ids_in(CallState.QUEUED, max_score_ms=overdue, limit=BATCH)
        released_key = self.keys.released()
        released = [
            as_text(iid)
            for iid in self.runtime.redis.zrangebyscore(
                released_key, "-inf", overdue, start=0, num=BATCH
            )
        ]
        if not (stale or released) or dispatch_queue_length() != 0:
            return
        if stale:
            publish_dispatch(stale, lane=Lane.INTERACTIVE)
            report.republished += len(stale)
        # Released by the pacer, never claimed: published again, or forgotten if no longer due.
        again = []
        for iid in released:
            if released_again(self.ledger.get(iid)):
                again.append(iid)
            else:
                self.runtime.redis.zrem(released_key, iid)
        if again:
            self.runtime.redis.zadd(released_key, dict.fromkeys(again, now))
            publish_dispatch(again, lane=Lane.CAMPAIGN)
            report.republished += len(again)

    def _inbox(self, now: int, report: ReconcileReport) -> None:
        """Callbacks taken by the receiver whose handle_result never recorded them (its message
        lost with a killed worker): published again after the requeue grace."""
        redis = self.runtime.redis
        grace = now - int(self.settings.requeue_grace * 1000)
        for raw in redis.zrangebyscore(self.keys.inbox(), "-inf", grace, start=0, num=BATCH):
            iid = as_text(raw)
            event = redis.hget(self.keys.call(iid), "callback")
            if event is None:
                redis.zrem(self.keys.inbox(), iid)
                continue
            redis.zadd(self.keys.inbox(), {iid: now})
            publish_task(HANDLE_RESULT_TASK, [json.loads(event)], RESULTS_QUEUE)
            report.callbacks_again += 1

    def _outbox(self, now: int, report: ReconcileReport) -> None:
        """Deliveries not confirmed in time: published again, up to MAX_DELIVERIES times."""
        redis = self.runtime.redis
        outbox, messages = self.keys.outbox(), self.keys.outbox_messages()
        timeout_ms = int(self.settings.outbox_timeout * 1000)
        for raw in redis.zrangebyscore(outbox, "-inf", now, start=0, num=BATCH):
            member = as_text(raw)
            stored = redis.hget(messages, member)
            if stored is None:
                redis.zrem(outbox, member)
                continue
            message = next_delivery(json.loads(stored))
            if message is None:
                logger.error(
                    "outcome delivery %s: not confirmed after %d deliveries; given up",
                    member,
                    MAX_DELIVERIES,
                )
                pipe = redis.pipeline(transaction=True)
                pipe.zrem(outbox, member)
                pipe.hdel(messages, member)
                pipe.execute()
                report.deliveries_given_up += 1
                continue
            pipe = redis.pipeline(transaction=True)
            pipe.zadd(outbox, {member: now + timeout_ms})
            pipe.hset(messages, member, json.dumps(message))
            if self.settings.broker_is_ledger_redis:
                queue, body = envelope(message["task"], message["args"], message["queue"])
                pipe.lpush(queue, body)
            pipe.execute()
            if not self.settings.broker_is_ledger_redis:
                publish_task(message["task"], message["args"], message["queue"])
            report.deliveries_again += 1


def reconcile(runtime: Runtime) -> ReconcileReport:
    """One reconciliation pass."""
    return Reconciler(runtime).run()


@app.task(name=RECONCILE_TASK, ignore_result=True)
def reconcile_task() -> dict[str, int]:
    """Periodic reconciliation (beat)."""
    return vars(reconcile(get_runtime()))
