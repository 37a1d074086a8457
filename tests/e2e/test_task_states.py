"""Celery states that match reality, as Flower sees them through task events: a call placed is
SUCCESS with its call-id, one CM refused is FAILURE saying why, one waiting in Redis is a
WAITING task saying for what, one of a paused campaign HELD, one CM may have placed UNKNOWN,
and a result task says the outcome and any redial; never a number in any of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cmvoice.calls import CallState
from cmvoice.campaigns import control
from cmvoice.messages import HANDLE_RESULT_TASK
from cmvoice.producer import enqueue
from cmvoice.publishing import publish_dispatch
from cmvoice.runtime import get_runtime
from cmvoice.tasks.results import redial_id_for
from tests.support.campaigns import campaign_ids, one_call_released, store
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
    # (the worker publishes task events every fraction of a second, not with each event)
    wait_for(lambda: _first(events_of(task_events, waiting.instruction_id), "task-succeeded"))
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


def test_a_call_of_a_paused_campaign_is_held(
    stack: Stack, task_events: list[dict[str, Any]], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Given a campaign whose only call the pacer released to the broker, then paused before
    # any worker took that call
    campaign, _ = one_call_released(tmp_path)
    control.pause(store(), campaign.campaign_id)
    [iid] = campaign_ids(campaign.campaign_id)

    # When a worker runs it
    request.getfixturevalue("worker")

    # Then its task is HELD, saying why, and nothing was sent
    held = wait_for(lambda: _first(events_of(task_events, iid), "task-held"))
    assert held["result"] == "'waiting: campaign paused'"
    assert not any(e["type"] == "task-succeeded" for e in events_of(task_events, iid))
    assert stack.calls() == []


def test_a_call_cm_may_have_placed_is_unknown(
    stack: Stack, worker: Any, task_events: list[dict[str, Any]]
) -> None:
    # Given CM answering every POST with a 500 (the call may or may not ring)
    stack.faults(fail_500=1.0)

    # When a call is enqueued
    ticket = enqueue({"callee": CALLEE, "caller": CALLER, "prompt": "Hello."}, kind="notification")

    # Then its task is UNKNOWN, waiting for CM's callback, not a SUCCESS or a FAILURE
    unknown = wait_for(
        lambda: _first(events_of(task_events, ticket.instruction_id), "task-unknown")
    )
    assert unknown["result"].startswith("'unknown: ")
    assert "500" in unknown["result"]
    assert "waiting for a callback" in unknown["result"]
    ended = {"task-succeeded", "task-failed"}
    assert not any(e["type"] in ended for e in events_of(task_events, ticket.instruction_id))
    assert "612345678" not in str(task_events)


def test_a_bad_token_is_a_failure_saying_so(
    stack: Stack, worker: Any, task_events: list[dict[str, Any]]
) -> None:
    # Given a product token CM does not accept
    stack.make_runtime(product_token="11111111-2222-3333-4444-555555555555")

    # When a call is enqueued
    ticket = enqueue({"callee": CALLEE, "caller": CALLER, "prompt": "Hello."}, kind="notification")

    # Then its task FAILED with CM's 401, after the ledger recorded it
    failed = wait_for(lambda: _first(events_of(task_events, ticket.instruction_id), "task-failed"))
    assert get_runtime().ledger.get(ticket.instruction_id).state is CallState.FAILED
    assert "CallFailed" in failed["exception"]
    assert "failed: " in failed["exception"]
    assert "401" in failed["exception"]
    assert "555555555555" not in str(task_events)


def test_result_tasks_say_the_outcome_and_the_redial(
    stack: Stack, worker: Any, task_events: list[dict[str, Any]]
) -> None:
    # Given redials five minutes after a call cancelled, not answered (code 9)
    stack.make_runtime(redial_delay=300)

    # When one call is not answered (9) and another fails (11)
    prompt = {"caller": CALLER, "prompt": "Hello."}
    unanswered = enqueue({"callee": "+31612345609", **prompt}, kind="notification")
    failing = enqueue({"callee": "+31612345611", **prompt}, kind="notification")
    ledger = get_runtime().ledger
    wait_for(lambda: ledger.get(unanswered.instruction_id).state is CallState.FINISHED)
    wait_for(lambda: ledger.get(failing.instruction_id).state is CallState.FINISHED)

    # Then the first one's result task says its code and the redial to come, the second's that
    # its outcome is final
    redial_id = redial_id_for(
        unanswered.instruction_id, str(ledger.get(unanswered.instruction_id).call_id)
    )
    results = wait_for(lambda: _results_of_handle_result(task_events, 2))
    assert sorted(results) == [
        "'outcome 11 Failed (final)'",
        f"'outcome 9 Cancelled (redial {redial_id} in 5m)'",
    ]
    assert "6123456" not in str(task_events)


def _first(events: list[dict[str, Any]], event_type: str) -> dict[str, Any] | None:
    return next((event for event in events if event["type"] == event_type), None)


def _results_of_handle_result(events: list[dict[str, Any]], count: int) -> list[str] | None:
    """The results of the handle_result tasks that succeeded, once there are ``count``."""
    tasks = {
        event["uuid"]
        for event in events
        if event.get("type") == "task-received" and event.get("name") == HANDLE_RESULT_TASK
    }
    results = [
        str(event["result"])
        for event in events
        if event["type"] == "task-succeeded" and event.get("uuid") in tasks
    ]
    return results if len(results) >= count else None
