"""Task events reach Flower although the worker publishes them in batches on a timer: every
task's received, started and succeeded, including those of the last task a worker ran before
it was stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cmvoice.calls import CallState
from cmvoice.messages import HANDLE_RESULT_TASK
from cmvoice.producer import enqueue
from cmvoice.worker import app
from tests.support.stack import CALLER, Stack, wait_for
from tests.support.workers import WorkerProcess

LIFECYCLE = {"task-received", "task-started", "task-succeeded"}


def lifecycle_by_task(events: list[dict[str, Any]], name: str) -> dict[str, set[str]]:
    """For each task of this name: the lifecycle events Flower got for it."""
    uuids = {e["uuid"] for e in events if e.get("type") == "task-received" and e["name"] == name}
    seen: dict[str, set[str]] = {uuid: set() for uuid in uuids}
    for event in events:
        if event.get("uuid") in seen and event["type"] in LIFECYCLE:
            seen[event["uuid"]].add(event["type"])
    return seen


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

    # Then Flower has heard each task's whole life: twelve dispatches and twelve outcomes
    def complete() -> bool:
        tasks = {
            **lifecycle_by_task(task_events, "cmvoice.dispatch"),
            **lifecycle_by_task(task_events, HANDLE_RESULT_TASK),
        }
        return len(tasks) == 24 and all(seen == LIFECYCLE for seen in tasks.values())

    wait_for(complete, timeout_s=5)
    assert worker.process.returncode == 0
