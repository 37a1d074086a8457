"""Task events for Flower, published in batches on a timer instead of one publish per event.

Celery's worker buffers task events (``task.multi`` messages, which Flower reads like single
ones) but flushes the buffer at the next turn of its event loop after every event. At a hundred
calls a second that is hundreds of publishes a second, each a Redis round trip on the consumer's
thread, the thread that also takes every message in. This step flushes every
``FLUSH_INTERVAL_S`` instead, so one publish carries the events of many tasks; Flower shows a
task at most that much later.
"""

from __future__ import annotations

import sys
from typing import Any

from celery import bootsteps

#: Longest an event waits in the worker before Flower can see it.
FLUSH_INTERVAL_S = 0.2


class EventBatchingStep(bootsteps.StartStopStep):
    """Replaces the flush after each event with one every ``FLUSH_INTERVAL_S``.

    A consumer step after Celery's ``Events``: that step makes a new dispatcher each time the
    consumer (re)connects, and this one starts after it each time.
    """

    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer_entry: Any = None

    def start(self, parent: Any) -> None:
        dispatcher = parent.event_dispatcher
        if parent.hub is None or dispatcher is None or not dispatcher.enabled:
            return  # no event loop (Celery then publishes each event at once), or no events
        dispatcher.on_send_buffered = None
        # Only the event loop's thread may publish on the dispatcher's connection. Celery
        # flushes a buffer that reaches its limit in the thread that filled it, which with the
        # thread pool is a task's thread; on RabbitMQ the loop also reads that connection's
        # socket (for heartbeats) and can take the reply a task's thread waits for, leaving it
        # waiting forever with the dispatcher's lock held: the whole worker stops. Without a
        # limit, tasks' threads only append, and the timer below publishes.
        dispatcher.buffer_limit = sys.maxsize
        self._timer_entry = parent.timer.call_repeatedly(
            FLUSH_INTERVAL_S, self._flush, (parent,), priority=10
        )

    def stop(self, parent: Any) -> None:
        if self._timer_entry is not None:
            self._timer_entry.cancel()
            self._timer_entry = None
        # What the last interval buffered: Celery closes the dispatcher without flushing it.
        self._flush(parent)

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)

    @staticmethod
    def _flush(parent: Any) -> None:
        # A failed publish keeps its events buffered (Celery's buffer_while_offline).
        if parent.event_dispatcher is not None:
            parent.event_dispatcher.flush()
