"""Outcome delivery: at least once from the outbox, processed once by ``@cmvoice.result_task``.

Each outcome goes to every task in ``CMVOICE_RESULT_TASKS`` through the outbox
(docs/architecture.md, "Results"): written with the FINISHED transition, re-published by the
reconciler until the task confirms it. A task wrapped by ``result_task`` confirms after it
succeeded and skips a delivery it already processed; any other result task run by a cmvoice
worker is confirmed when it succeeds (at least once, so it may see a re-published outcome
twice: its ``delivery_id`` tells).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task
from celery.signals import task_success

from cmvoice import lua
from cmvoice.lease import Lease
from cmvoice.outage import is_outage
from cmvoice.outcomes import CallOutcome
from cmvoice.runtime import Runtime, get_runtime
from cmvoice.worker import app

logger = logging.getLogger(__name__)

#: Times a delivery is published before the reconciler gives up on a task that never confirms.
MAX_DELIVERIES = 10
#: Times a processed delivery's confirmation is tried while Redis is away (about a minute).
CONFIRM_ATTEMPTS = 16
#: The shortest lease one copy of a delivery runs under (Redis refuses an expiry of 0, which a
#: CMVOICE_OUTBOX_TIMEOUT of 0 would give).
MIN_PROCESSING_LEASE_S = 1.0

T = TypeVar("T")


def outbox_member(task_name: str, delivery_id: str) -> str:
    """How one outcome's delivery to one task is named in the outbox."""
    return f"{task_name}|{delivery_id}"


def stored_message(task_name: str, queue: str, args: list[Any]) -> str:
    """What the outbox keeps to publish a delivery again."""
    return json.dumps({"task": task_name, "queue": queue, "args": args, "published": 1})


def confirm(runtime: Runtime, task_name: str, delivery_id: str) -> None:
    """Mark the delivery processed and take it out of the outbox."""
    keys = runtime.keys
    script = lua.load(runtime.redis, "confirm_delivery")
    script(
        keys=[keys.processed(task_name, delivery_id), keys.outbox(), keys.outbox_messages()],
        args=[outbox_member(task_name, delivery_id), int(runtime.settings.retention)],
    )


def _confirm_with_patience(runtime: Runtime, task_name: str, delivery_id: str) -> None:
    """Confirm a delivery the function processed, retrying while Redis is away: a failed
    confirmation must not make the task (and so the function) run again."""
    for attempt in range(CONFIRM_ATTEMPTS):
        try:
            confirm(runtime, task_name, delivery_id)
            return
        except Exception as exc:
            if not is_outage(exc):
                raise
            time.sleep(min(0.2 * 2**attempt, 5.0))
    # Given up: the outbox publishes it again after its timeout, and it may run once more.
    logger.error("delivery %s to %s: processed, but could not be confirmed", delivery_id, task_name)


def already_processed(runtime: Runtime, task_name: str, delivery_id: str) -> bool:
    return bool(runtime.redis.exists(runtime.keys.processed(task_name, delivery_id)))


def result_task(
    name: str, **options: Any
) -> Callable[[Callable[[CallOutcome], T]], Task[Any, T | None]]:
    """Decorator: a Celery task that receives each call outcome once.

    ::

        @cmvoice.result_task("myapp.call_finished")
        def call_finished(outcome: cmvoice.CallOutcome) -> None:
            ...

    Name it in ``CMVOICE_RESULT_TASKS``. The outcome is delivered at least once (the outbox
    publishes it again until it is confirmed); the task runs your function once per outcome:
    a delivery it already processed, or that another copy is processing (under a lease of
    ``CMVOICE_OUTBOX_TIMEOUT``), is skipped, and it confirms only after your function
    returned (retrying the confirmation, never your function, while Redis is briefly away).
    One window stays, as with any task whose effects live outside cmvoice's Redis: a worker
    killed after your function returned and before the confirmation (one Redis round trip)
    runs it again for that outcome, as does a function that outlives its lease. Make its
    effect idempotent on ``outcome.delivery_id`` where that matters.
    """

    def decorate(function: Callable[[CallOutcome], T]) -> Task[Any, T | None]:
        @app.task(name=name, bind=True, acks_late=True, **options)
        def run(self: Task[Any, Any], outcome: dict[str, Any]) -> T | None:
            runtime = get_runtime()
            delivery_id = str(outcome.get("delivery_id") or "")
            if not delivery_id:
                return function(CallOutcome.from_dict(outcome))
            # Copies of one delivery can be queued at once (the outbox published it again while
            # the broker still held or restored the first): one runs, under a lease; the others
            # skip it unconfirmed, and if that one's worker dies the outbox publishes once more.
            lease = Lease(
                runtime.redis,
                runtime.keys.processing(name, delivery_id),
                ttl_s=max(runtime.settings.outbox_timeout, MIN_PROCESSING_LEASE_S),
            )
            if not lease.take():
                return None
            # Checked under the lease: a copy that finished just before is confirmed by now.
            if already_processed(runtime, name, delivery_id):
                confirm(runtime, name, delivery_id)
                lease.release()
                return None
            try:
                result = function(CallOutcome.from_dict(outcome))
            except BaseException:
                lease.release()  # a retry of this task takes it again
                raise
            _confirm_with_patience(runtime, name, delivery_id)
            with contextlib.suppress(Exception):
                lease.release()  # else it runs out; the delivery is confirmed either way
            return result

        run.__doc__ = function.__doc__
        run.cmvoice_confirms = True
        task: Task[Any, T | None] = run
        return task

    return decorate


@task_success.connect
def _confirm_plain_result_task(sender: Task[Any, Any] | None = None, **_: Any) -> None:
    """A result task not wrapped by ``result_task`` is confirmed when it succeeds."""
    if sender is None or getattr(sender, "cmvoice_confirms", False):
        return
    runtime = get_runtime()
    if sender.name not in runtime.settings.result_tasks:
        return
    args = sender.request.args or []
    outcome = args[0] if args and isinstance(args[0], dict) else {}
    delivery_id = str(outcome.get("delivery_id") or "")
    if delivery_id:
        confirm(runtime, sender.name, delivery_id)
