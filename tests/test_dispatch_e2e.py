"""Dispatch end to end: producer -> Redis -> real worker -> simulator -> receiver -> ledger."""

from __future__ import annotations

from typing import Any

from cmvoice.ledger import CallState
from cmvoice.producer import enqueue
from cmvoice.runtime import get_runtime
from tests.conftest import CALLEE, CALLER, Stack, wait_for


def notification(callee: str = CALLEE, **extra: Any) -> dict[str, Any]:
    return {"callee": callee, "caller": CALLER, "prompt": "Your parcel arrives today.", **extra}


def state_of(instruction_id: str) -> CallState | None:
    record = get_runtime().ledger.get(instruction_id)
    return record.state if record else None


def test_an_enqueued_notification_is_placed_once_and_finishes(stack: Stack, worker: Any) -> None:
    ticket = enqueue(notification())

    wait_for(lambda: state_of(ticket.instruction_id) is CallState.FINISHED)

    record = get_runtime().ledger.get(ticket.instruction_id)
    assert record is not None
    assert record.get("result_code") == "10"
    calls = [c for c in stack.calls() if c["instruction-id"] == ticket.instruction_id]
    assert len(calls) == 1
