"""Celery states that match reality, as Flower sees them through task events: a call placed is
SUCCESS with its call-id, one CM refused is FAILURE saying why, one waiting in Redis is a
WAITING task saying for what; never a number in any of them."""

from __future__ import annotations

from typing import Any

from cmvoice.calls import CallState
from cmvoice.producer import enqueue
from cmvoice.publishing import publish_dispatch
from cmvoice.runtime import get_runtime
from tests.support.stack import CALLEE, CALLER, Stack, wait_for


def events_of(events: list[dict[str, Any]], instruction_id: str) -> list[dict[str, Any]]:
    """The events of the dispatch tasks of one call, in order (matched by their argument)."""
    tasks = {
        event["uuid"]
        for event in events
        if event.get("type") == "task-received"
        and event.get("name") == "cmvoice.dispatch"
        and instruction_id in str(event.get("args"))
    }
    return [event for event in events if event.get("uuid") in tasks]


def test_placed_and_waiting_calls_end_in_states_that_say_so(
    stack: Stack, worker: Any, task_events: list[dict[str, Any]]
) -> None:
    # Given one concurrency slot, taken (by a call still ringing, as far as anyone can tell)
    runtime = stack.make_runtime(max_concurrent_calls=1)
    ledger = runtime.ledger
    runtime.redis.zadd(runtime.limits.slots_key, {"ringing-elsewhere": 10**13})

    # When a call is enqueued, then it waits in Redis, and its task says so
    waiting = enqueue({"callee": CALLEE, "caller": CALLER, "prompt": "Hello."}, kind="notification")
    wait_for(
        lambda: any(
            e["type"] == "task-waiting" for e in events_of(task_events, waiting.instruction_id)
        )
    )
    assert ledger.get(waiting.instruction_id).state is CallState.QUEUED
    assert stack.calls() == []

    # When the slot frees, then the call is placed by a later task that succeeds, saying which
    # call CM placed
    runtime.slots.release("ringing-elsewhere")
    wait_for(lambda: ledger.get(waiting.instruction_id).state is CallState.FINISHED)
    events = events_of(task_events, waiting.instruction_id)
    waited = next(event for event in events if event["type"] == "task-waiting")
    assert "waiting: a concurrency slot" in waited["result"]
    succeeded = [event for event in events if event["type"] == "task-succeeded"]
    assert len(succeeded) == 1
    assert succeeded[0]["result"].startswith("'placed call ")

    # And no event carries the number
    assert "612345678" not in str(task_events)


def test_a_call_cm_refuses_is_a_failure_with_cms_reason(
    stack: Stack, worker: Any, task_events: list[dict[str, Any]]
) -> None:
    # Given a call the simulator refuses with a 400 (a prompt past CM's limit, written to the
    # ledger directly: enqueue() itself would refuse it)
    ledger = get_runtime().ledger
    payload = {"callee": CALLEE, "caller": CALLER, "prompt": "x" * 800}
    ledger.create("refused-1", "notification", payload)

    # When it is dispatched
    publish_dispatch(["refused-1"])
    wait_for(lambda: ledger.get("refused-1").state is CallState.FAILED)
    wait_for(lambda: any(e["type"] == "task-failed" for e in events_of(task_events, "refused-1")))

    # Then its task FAILED, saying CM's status, after the ledger recorded it
    failed = next(e for e in events_of(task_events, "refused-1") if e["type"] == "task-failed")
    assert "CallFailed" in failed["exception"]
    assert "failed: " in failed["exception"]
    assert "400" in failed["exception"]
    assert "612345678" not in str(failed)
