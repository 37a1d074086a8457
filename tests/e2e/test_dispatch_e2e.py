"""Dispatch end to end, one test per row of the dispatch table (docs/architecture.md).

producer -> Redis -> a real Celery worker -> the simulator (with injected faults) over HTTP ->
callback -> receiver -> handle_result -> ledger. Each test asserts the final ledger state and
how many POSTs the simulator received.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from cmvoice.calls import CallRecord, CallState
from cmvoice.producer import enqueue
from cmvoice.publishing import publish_dispatch
from cmvoice.runtime import get_runtime
from cmvoice.serving import ServerThread
from cmvoice.simulator import Faults, SimulatorConfig, create_app
from cmvoice.tasks.maintenance import reconcile
from tests.support.stack import CALLEE, CALLER, Stack, wait_for


def notification(callee: str = CALLEE, **extra: Any) -> dict[str, Any]:
    return {"callee": callee, "caller": CALLER, "prompt": "Your parcel arrives today.", **extra}


def record_of(instruction_id: str) -> CallRecord:
    record = get_runtime().ledger.get(instruction_id)
    assert record is not None, instruction_id
    return record


def settles_in(instruction_id: str, *states: CallState, timeout_s: float = 15) -> CallRecord:
    wait_for(lambda: record_of(instruction_id).state in states, timeout_s=timeout_s)
    return record_of(instruction_id)


def posts_with_status(stack: Stack, status: str) -> int:
    requests_by_status: dict[str, int] = stack.posts()["requests"]["by-status"]
    return int(requests_by_status.get(status, 0))


def placed_calls(stack: Stack, instruction_id: str) -> int:
    return len([c for c in stack.calls() if c["instruction-id"] == instruction_id])


@pytest.mark.rabbitmq
def test_call_queued_means_placed_once_then_finished(stack: Stack, worker: Any) -> None:
    ticket = enqueue(notification())

    record = settles_in(ticket.instruction_id, CallState.FINISHED)

    assert record.get("result_code") == "10"
    assert record.call_id
    assert record.get_int("posts") == 1
    assert placed_calls(stack, ticket.instruction_id) == 1


def test_connection_refused_is_retried_with_backoff_then_fails(stack: Stack, worker: Any) -> None:
    from cmvoice.embedded_redis import free_port

    stack.make_runtime(
        api_url=f"http://127.0.0.1:{free_port()}/voiceapi/v2",
        max_dispatch_retries=2,
        retry_backoff_base=0.02,
    )
    ticket = enqueue(notification())

    record = settles_in(ticket.instruction_id, CallState.FAILED)

    assert record.attempts == 2
    assert "gave up after 3 attempts" in record.last_error
    assert "could not connect" in record.last_error
    assert placed_calls(stack, ticket.instruction_id) == 0


def test_429_waits_for_retry_after_without_spending_error_attempts(
    stack: Stack, worker: Any
) -> None:
    stack.make_runtime(max_dispatch_retries=0)
    stack.faults(fail_429=1.0, retry_after_s=1)
    ticket = enqueue(notification())
    wait_for(lambda: posts_with_status(stack, "429") >= 2, timeout_s=10)

    stack.faults()  # CM serves again
    record = settles_in(ticket.instruction_id, CallState.FINISHED)

    assert record.attempts == 0, "429s are not error attempts, even with no retries allowed"
    assert placed_calls(stack, ticket.instruction_id) == 1


@pytest.mark.rabbitmq
@pytest.mark.parametrize("status", ["503"])
def test_cm_unavailable_is_retried_then_placed_once(stack: Stack, worker: Any, status: str) -> None:
    stack.make_runtime(retry_backoff_base=0.05, max_dispatch_retries=50)
    stack.faults(fail_503=1.0)
    ticket = enqueue(notification())
    wait_for(lambda: posts_with_status(stack, status) >= 3)

    stack.faults()
    record = settles_in(ticket.instruction_id, CallState.FINISHED)

    assert record.attempts >= 3
    assert placed_calls(stack, ticket.instruction_id) == 1


def test_cm_unavailable_for_good_fails_after_the_retry_budget(stack: Stack, worker: Any) -> None:
    stack.make_runtime(retry_backoff_base=0.02, max_dispatch_retries=3)
    stack.faults(fail_503=1.0)
    ticket = enqueue(notification())

    record = settles_in(ticket.instruction_id, CallState.FAILED)

    assert "gave up after 4 attempts" in record.last_error
    assert posts_with_status(stack, "503") == 4
    assert placed_calls(stack, ticket.instruction_id) == 0


def test_a_request_cm_refuses_fails_at_once_with_cms_message(stack: Stack, worker: Any) -> None:
    # Given a record whose payload breaks a rule CM enforces (written around enqueue's checks)
    runtime = get_runtime()
    runtime.ledger.create("refused-1", "notification", {**notification(), "prompt": "x" * 800})
    publish_dispatch(["refused-1"])

    record = settles_in("refused-1", CallState.FAILED)

    assert "400" in record.last_error
    assert "prompt" in record.last_error
    assert record.attempts == 0
    assert posts_with_status(stack, "400") == 1


def test_an_unknown_app_path_404_fails_without_retry(stack: Stack, worker: Any) -> None:
    stack.make_runtime(api_url=stack.simulator_url + "/wrong/prefix")
    ticket = enqueue(notification())

    record = settles_in(ticket.instruction_id, CallState.FAILED)

    assert "404" in record.last_error
    assert record.get_int("posts") == 1, "a 404 is not retried"
    assert record.attempts == 0


def test_a_bad_token_fails_fast_and_stops_further_posts(stack: Stack, worker: Any) -> None:
    stack.make_runtime(
        product_token="11111111-2222-3333-4444-555555555555",
        api_url=stack.simulator_url + "/voiceapi/v2",
    )
    first = enqueue(notification())
    assert "401" in settles_in(first.instruction_id, CallState.FAILED).last_error

    second = enqueue(notification("+31612345600"))
    record = settles_in(second.instruction_id, CallState.FAILED)

    assert "product token" in record.last_error
    assert posts_with_status(stack, "401") == 1, "no retry storm: the second call was not sent"


@pytest.mark.rabbitmq
def test_a_read_timeout_is_unknown_and_a_late_callback_settles_it(
    stack: Stack, worker: Any
) -> None:
    # Given a CM that places the call but whose answer never arrives, and whose calls last
    # long enough (a slower simulator clock) for the callback to come after the timeout
    faults = Faults(timeout_rate=1.0, hold_s=1.0, timeout_places_call=1.0)
    slow_cm = SimulatorConfig(time_scale=0.3, faults=faults, seed=1)
    with ServerThread(create_app(slow_cm)) as simulator:
        stack.make_runtime(http_timeout=0.3, api_url=simulator.url + "/voiceapi/v2")
        ticket = enqueue(notification())

        settles_in(ticket.instruction_id, CallState.UNKNOWN)
        # CM placed it after all: its callback arrives and moves the record on.
        record = settles_in(ticket.instruction_id, CallState.FINISHED)
        placed = requests.get(simulator.url + "/_sim/calls", timeout=5).json()["calls"]

    assert record.get("result_code") == "10"
    assert [call["instruction-id"] for call in placed] == [ticket.instruction_id]
    assert record.get_int("posts") == 1, "an UNKNOWN call is never sent again"


def test_a_500_is_unknown_and_without_callback_fails_by_policy(stack: Stack, worker: Any) -> None:
    stack.make_runtime(unknown_timeout=0.2)
    stack.faults(fail_500=1.0)
    ticket = enqueue(notification())
    settles_in(ticket.instruction_id, CallState.UNKNOWN)

    def reconciled() -> bool:
        reconcile(get_runtime())
        return record_of(ticket.instruction_id).state is CallState.FAILED

    wait_for(reconciled, timeout_s=5, interval_s=0.1)
    record = record_of(ticket.instruction_id)
    assert "outcome unknown" in record.last_error
    assert posts_with_status(stack, "500") == 1
    assert placed_calls(stack, ticket.instruction_id) == 0
