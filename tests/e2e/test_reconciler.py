"""The reconciler: every call left behind by a lost worker or message is moved on, once."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from cmvoice.calls import CallState, Claim
from cmvoice.runtime import Runtime
from cmvoice.tasks.maintenance import dispatch_queue_length, reconcile
from tests.support.stack import CALLEE, CALLER, Stack, wait_for

pytestmark = pytest.mark.rabbitmq

PAYLOAD = {"callee": CALLEE, "caller": CALLER, "prompt": "x"}


def claimed(runtime: Runtime, iid: str, lease_s: float = 0.01) -> Claim:
    runtime.ledger.create(iid, "notification", PAYLOAD)
    claim = runtime.ledger.claim(iid, lease_s=lease_s)
    assert isinstance(claim, Claim)
    return claim


def wait_for_dispatch_messages(count: int) -> None:
    """Until the dispatch lanes hold ``count`` messages (RabbitMQ routes a publish a moment
    after the publisher returns)."""
    wait_for(lambda: dispatch_queue_length() == count, timeout_s=5)


def test_a_lease_expired_before_sending_is_requeued_and_after_sending_becomes_unknown(
    stack: Stack,
) -> None:
    runtime = stack.make_runtime()
    claimed(runtime, "unsent")
    sent = claimed(runtime, "sent")
    runtime.ledger.mark_sending(sent, lease_s=0.01)
    time.sleep(0.05)

    report = reconcile(runtime)

    assert report.requeued_unsent == 1
    assert report.unknown_after_crash == 1
    assert runtime.ledger.get("unsent").state is CallState.QUEUED
    assert runtime.ledger.get("sent").state is CallState.UNKNOWN
    wait_for_dispatch_messages(1)  # the requeued call got a dispatch message


def test_a_placed_call_whose_callback_never_comes_fails_and_a_late_callback_still_counts(
    stack: Stack,
) -> None:
    runtime = stack.make_runtime(callback_timeout=0.05)
    claim = claimed(runtime, "silent", lease_s=30)
    runtime.ledger.mark_sending(claim, lease_s=30)
    runtime.ledger.placed(claim, "6d0f176e-00ac-4de2-a04d-b3f7c895adb0")
    time.sleep(0.1)

    assert reconcile(runtime).no_callback == 1
    record = runtime.ledger.get("silent")
    assert record is not None
    assert record.state is CallState.FAILED
    assert "no callback" in record.last_error

    runtime.ledger.finish("silent", "6d0f176e-00ac-4de2-a04d-b3f7c895adb0", {"result_code": "10"})
    assert runtime.ledger.get("silent").state is CallState.FINISHED


def test_unknown_calls_fail_by_policy_after_the_unknown_timeout(stack: Stack) -> None:
    runtime = stack.make_runtime(unknown_timeout=0.05)
    claim = claimed(runtime, "unknown", lease_s=30)
    runtime.ledger.mark_sending(claim, lease_s=30)
    runtime.ledger.unknown(claim, "read timeout")

    assert reconcile(runtime).unknown_failed == 0, "not before the timeout"
    time.sleep(0.1)
    assert reconcile(runtime).unknown_failed == 1
    assert runtime.ledger.get("unknown").state is CallState.FAILED


def test_a_queued_call_whose_message_was_lost_is_republished_once_the_queue_is_empty(
    stack: Stack,
) -> None:
    runtime = stack.make_runtime(requeue_grace=0.05)
    runtime.ledger.create("lost", "notification", PAYLOAD)  # no message published
    time.sleep(0.1)
    assert dispatch_queue_length() == 0

    assert reconcile(runtime).republished == 1
    wait_for_dispatch_messages(1)
    # the message is waiting now: the next pass leaves it be
    assert reconcile(runtime).republished == 0


def test_due_entries_of_the_schedule_are_dispatched(stack: Stack) -> None:
    runtime = stack.make_runtime()
    runtime.ledger.create("later", "notification", PAYLOAD, due_in_s=0.05)
    runtime.schedule.add("later", 0.05)
    assert reconcile(runtime).scheduled == 0
    time.sleep(0.1)

    assert reconcile(runtime).scheduled == 1
    assert len(runtime.schedule) == 0


def test_two_reconcilers_at_once_move_each_call_once(stack: Stack, worker: Any) -> None:
    runtime = stack.make_runtime()
    for n in range(20):
        claim = claimed(runtime, f"crashed-{n}")
        del claim
    time.sleep(0.05)
    reports = []

    def run() -> None:
        reports.append(reconcile(runtime))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(r.requeued_unsent for r in reports) == 20
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if all(runtime.ledger.get(f"crashed-{n}").state is CallState.FINISHED for n in range(20)):
            break
        time.sleep(0.05)
    placed = [c["instruction-id"] for c in stack.calls()]
    assert sorted(placed) == sorted(f"crashed-{n}" for n in range(20))
