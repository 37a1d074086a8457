"""Never placed twice: duplicated tasks, and a worker killed in the middle of dispatch."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cmvoice.calls import CallState
from cmvoice.messages import ALL_QUEUES
from cmvoice.producer import enqueue
from cmvoice.publishing import publish_dispatch
from cmvoice.runtime import get_runtime
from cmvoice.tasks.maintenance import reconcile
from cmvoice.worker import app
from tests.support.stack import CALLER, Stack, wait_for
from tests.support.workers import WorkerProcess, thread_worker


def notification(callee: str) -> dict[str, Any]:
    return {"callee": callee, "caller": CALLER, "prompt": "Your appointment is tomorrow."}


def placements(stack: Stack) -> Counter[str]:
    return Counter(call["instruction-id"] for call in stack.calls())


@pytest.mark.rabbitmq
def test_the_same_dispatch_task_delivered_many_times_at_once_posts_once(
    stack: Stack, worker: Any
) -> None:
    # Given a CM that answers slowly, so that the duplicates overlap the first POST
    stack.faults(latency_ms=300)
    ticket = enqueue(notification("+31612345601"))

    # When the same task is delivered five more times, concurrently
    threads = [
        threading.Thread(target=publish_dispatch, args=([ticket.instruction_id],)) for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then exactly one call is placed
    wait_for(lambda: get_runtime().ledger.get(ticket.instruction_id).state is CallState.FINISHED)
    assert placements(stack)[ticket.instruction_id] == 1
    record = get_runtime().ledger.get(ticket.instruction_id)
    assert record is not None
    assert record.get_int("posts") == 1


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_a_worker_killed_mid_dispatch_loses_nothing_and_places_nothing_twice(
    stack: Stack, tmp_path: Path
) -> None:
    # Given a slow CM, short leases, and a worker process busy POSTing
    settings = {
        **stack.broker,
        "api_url": stack.simulator_url + "/voiceapi/v2",
        "callback_base_url": stack.receiver_url,
        "dispatch_lease": 1,
        "http_timeout": 3,
        "connect_timeout": 1,
        "unknown_timeout": 2,
        "requeue_grace": 1,
        "rate_limit": "1000/s",
    }
    runtime = stack.make_runtime(**settings)
    stack.faults(latency_ms=1500)
    victim = WorkerProcess(settings, tmp_path / "victim.log", concurrency=4, name="victim")
    try:
        victim.wait_ready(app)
        tickets = [enqueue(notification(f"+316123456{n:02d}")) for n in range(20, 30)]
        wait_for(
            lambda: any(runtime.ledger.get(t.instruction_id).get("sent") == "1" for t in tickets)
        )

        # When it is killed with POSTs in flight
        victim.kill()
    finally:
        victim.stop()
    stack.faults()

    # Then a second worker and the reconciler finish every call
    with thread_worker(app, ALL_QUEUES):

        def all_terminal() -> bool:
            reconcile(runtime)
            records = [runtime.ledger.get(t.instruction_id) for t in tickets]
            return all(r is not None and r.state.is_terminal for r in records)

        try:
            wait_for(all_terminal, timeout_s=40, interval_s=0.25)
        except AssertionError:
            for t in tickets:
                r = runtime.ledger.get(t.instruction_id)
                print(r.state if r else None, r.fields if r else None)
            raise

    placed = placements(stack)
    states = Counter(runtime.ledger.get(t.instruction_id).state for t in tickets)
    print(f"after the crash: {dict(states)}; placements {sorted(placed.values())}")
    assert all(placed[t.instruction_id] <= 1 for t in tickets), placed
    for ticket in tickets:
        record = runtime.ledger.get(ticket.instruction_id)
        assert record is not None
        if record.state is CallState.FINISHED:
            assert placed[ticket.instruction_id] == 1
