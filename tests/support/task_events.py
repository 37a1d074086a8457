"""A fixture capturing every Celery task event while a test runs: what Flower would show."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cmvoice.worker import app


@pytest.fixture
def task_events() -> Iterator[list[dict[str, Any]]]:
    """Every Celery event sent while the test runs (what Flower would show)."""
    events: list[dict[str, Any]] = []
    connection = app.connection_for_read()
    receiver = app.events.Receiver(connection, handlers={"*": events.append})

    def capture() -> None:
        # One consumer for the whole test, as Flower has: its queue is deleted when its
        # consumer goes, and what is published until the next one subscribes is lost.
        with connection:
            receiver.capture(limit=None, timeout=None, wakeup=False)

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    # Events sent before the receiver subscribed are lost (a pub/sub fan-out): wait until it
    # hears one of ours, so that the test's own events are all seen.
    probe = f"events-probe-{uuid.uuid4()}"
    deadline = time.monotonic() + 15
    while not any(event.get("uuid") == probe for event in events):
        assert time.monotonic() < deadline, "the event receiver never started"
        with app.events.default_dispatcher() as dispatcher:
            dispatcher.send("task-probe", uuid=probe)
        time.sleep(0.05)
    events.clear()
    try:
        yield events
    finally:
        receiver.should_stop = True
        thread.join(5)
