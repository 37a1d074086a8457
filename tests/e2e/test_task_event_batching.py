"""Task events reach Flower although the worker publishes them in batches on a timer: every
task's received, started and how it ended, including those of the last task a worker ran
before it was stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cmvoice.calls import CallState
from cmvoice.messages import HANDLE_RESULT_TASK
from cmvoice.producer import enqueue
from cmvoice.worker import app
from tests.support.stack import CALLER, Stack, wait_for
from tests.support.workers import WorkerProcess

BEGUN = {"task-received", "task-started"}


def lifecycle_by_task(events: list[dict[str, Any]], name: str, call: str) -> dict[str, set[str]]:
    """For each task of this name for this call (its id in the arguments): the types of the
    events Flower got for it. Tasks of calls other tests left behind are not counted."""
    uuids = {
        e["uuid"]
        for e in events
        if e.get("type") == "task-received" and e["name"] == name and call in str(e.get("args"))
    }
    seen: dict[str, set[str]] = {uuid: set() for uuid in uuids}
    for event in events:
        if event.get("uuid") in seen:
            seen[event["uuid"]].add(event["type"])
    return seen


@pytest.mark.rabbitmq
def test_every_event_arrives_even_from_a_worker_stopped_right_after_its_last_task(
    stack: Stack, tmp_path: Path, task_events: list[dict[str, Any]]
) -> None:
    # Given a worker process (Celery's own event loop, with the batching timer)
    settings = {
        **stack.broker,
        "api_url": stack.simulator_url + "/voiceapi/v2",
        "callback_base_url": stack.receiver_url,
        "rate_limit": "1000/s",
    }
    runtime = stack.make_runtime(**settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log", concurrency=4, name="batching")
    try:
        worker.wait_ready(app)

        # When twelve calls are placed and answered at once
        tickets = [
            enqueue({"callee": f"+316123{n:04d}0", "caller": CALLER, "prompt": "Hello."})
            for n in range(12)
        ]
        wait_for(
            lambda: all(
                runtime.ledger.get(t.instruction_id).state is CallState.FINISHED for t in tickets
            ),
            timeout_s=30,
        )
        # ... and the worker is stopped as soon as the last outcome is written: its result
        # task's events may still be waiting for the next flush
    finally:
        worker.stop()

    # Then Flower has heard each task's whole life: received, started and how it ended (a
    # dispatch may first have waited, for a slot another test's call still held), and each
    # call's dispatch and outcome succeeded
    def complete() -> bool:
        for ticket in tickets:
            for name in ("cmvoice.dispatch", HANDLE_RESULT_TASK):
                tasks = lifecycle_by_task(task_events, name, ticket.instruction_id)
                if not any("task-succeeded" in seen for seen in tasks.values()):
                    return False
                if any(not seen > BEGUN for seen in tasks.values()):
                    return False
        return True

    wait_for(complete, timeout_s=5)
    assert worker.process.returncode == 0
