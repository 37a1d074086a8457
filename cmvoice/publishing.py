"""Publishing: the one way cmvoice puts task messages on the broker.

Below both the tasks and the producer (docs/architecture.md, "Import direction"): dispatches
for either lane, now or later, in batches on one connection, and the broker envelope a Lua
script pushes atomically with the ledger transition that causes it (an outbox).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from cmvoice.messages import (
    DISPATCH_QUEUE,
    DISPATCH_TASK,
    INTERACTIVE_QUEUE,
    dispatch_message,
    task_envelope,
)
from cmvoice.schedule import MAX_COUNTDOWN_S
from cmvoice.worker import app

if TYPE_CHECKING:
    from cmvoice.runtime import Runtime


class Lane(StrEnum):
    """Which dispatch queue a call goes through."""

    #: Calls enqueued one by one, for a person waiting on them: served first.
    INTERACTIVE = "interactive"
    #: Calls the pacer released from a campaign's backlog.
    CAMPAIGN = "campaign"

    @property
    def queue(self) -> str:
        return INTERACTIVE_QUEUE if self is Lane.INTERACTIVE else DISPATCH_QUEUE

    @classmethod
    def of(cls, campaign_id: str | None) -> Lane:
        return cls.CAMPAIGN if campaign_id else cls.INTERACTIVE


def _dispatch_message(instruction_id: str) -> Any:
    args = (instruction_id,)
    return app.amqp.as_task_v2(
        str(uuid.uuid4()),
        DISPATCH_TASK,
        args=args,
        ignore_result=True,
        # What Celery's saferepr would give for an id, at a fraction of its cost.
        argsrepr=repr(list(args)),
        kwargsrepr="{}",
    )


class DispatchPublisher:
    """Publishes ``cmvoice.dispatch`` messages in batches over one producer connection.

    The messages are Celery's own (``app.amqp.as_task_v2``), sent by kombu's Producer, batched
    in a Redis pipeline by ``Producer.batch`` where the transport has it: what
    ``app.send_task`` sends, without its per-message costs (a result-backend subscription, a
    queue declaration and a task-sent event for each message).
    """

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._producer: Any = None

    def __enter__(self) -> DispatchPublisher:
        self._producer = self._stack.enter_context(app.producer_or_acquire())
        for queue in (INTERACTIVE_QUEUE, DISPATCH_QUEUE):
            self._producer.maybe_declare(app.amqp.queues[queue])
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def publish(self, instruction_ids: Sequence[str], lane: Lane = Lane.INTERACTIVE) -> None:
        """One message per id (the id is the only argument), in one round trip on Redis."""
        if not instruction_ids:
            return
        producer = self._producer
        batch = getattr(producer, "batch", None)  # kombu >= 5.7
        with batch(max_size=len(instruction_ids)) if batch else contextlib.nullcontext():
            for instruction_id in instruction_ids:
                app.amqp.send_task_message(
                    producer,
                    DISPATCH_TASK,
                    _dispatch_message(instruction_id),
                    queue=lane.queue,
                    declare=[],
                    retry=False,
                )


def publish_dispatch(
    instruction_ids: Sequence[str], *, lane: Lane = Lane.INTERACTIVE, countdown_s: float = 0.0
) -> None:
    """Publish one ``cmvoice.dispatch`` message per id, now or after ``countdown_s``."""
    if not countdown_s:
        with DispatchPublisher() as publisher:
            publisher.publish(instruction_ids, lane)
        return
    with app.producer_or_acquire() as producer:
        for instruction_id in instruction_ids:
            app.send_task(
                DISPATCH_TASK,
                args=[instruction_id],
                queue=lane.queue,
                countdown=countdown_s,
                producer=producer,
                # No result to wait for: the ledger has it. Saves a result-backend subscription.
                ignore_result=True,
            )


def dispatch_later(runtime: Runtime, instruction_id: str, delay_s: float) -> None:
    """Dispatch an interactive call again after ``delay_s``: a countdown when short, the Redis
    schedule when long (a countdown message is held unacknowledged by a worker until due)."""
    if delay_s <= MAX_COUNTDOWN_S:
        publish_dispatch([instruction_id], countdown_s=delay_s)
    else:
        runtime.schedule.add(instruction_id, delay_s)


def envelope(task_name: str, args: Sequence[Any], queue: str) -> tuple[str, bytes]:
    """A task message as kombu's Redis transport stores it: (list key, bytes to LPUSH), for a
    Lua script that publishes atomically with a ledger transition. It asks for no result, as
    every message cmvoice publishes: the worker would store one per run (nobody reads it).
    """
    return queue, task_envelope(task_name, args, queue, ignore_result=True)


def dispatch_envelope(instruction_id: str, lane: Lane) -> bytes:
    """The ``cmvoice.dispatch`` envelope of one call, for the pacer's release step."""
    return dispatch_message(instruction_id, lane.queue)


def publish_task(task_name: str, args: Sequence[Any], queue: str, **options: Any) -> None:
    """Publish one task message (result tasks, handle_result) with Celery's own send.

    Like every message cmvoice publishes, it asks for no result: nobody waits for one (the
    ledger has the outcome), and asking would make Celery subscribe to it in the result
    backend's Redis for each message, blocking the publish while that Redis is away.
    ``options`` go to ``send_task`` (``retry``, ``retry_policy``).
    """
    app.send_task(task_name, args=list(args), queue=queue, ignore_result=True, **options)
