"""What the simulator remembers: every placed call, and counters of requests and callbacks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cmvoice.events import format_timestamp
from cmvoice.simulator.callbacks import DeliveryStatus


@dataclass
class CallRecord:
    """One placed call. Holds full numbers (it is a local sandbox) but never the OTP code."""

    call_id: str
    instruction_id: str | None
    app: str
    callee: str
    caller: str
    code: int
    accepted_at: datetime
    finishes_at: datetime
    has_callback_url: bool
    digits: str | None = None
    callback_status: DeliveryStatus = DeliveryStatus.PENDING
    callback_attempts: int = 0
    callbacks_delivered: int = 0
    duplicated: bool = False
    #: How the placing request ended: 200, or 500 / timeout when fault injection hid it.
    answered_with: str = "200"

    def to_json(self) -> dict[str, Any]:
        return {
            "call-id": self.call_id,
            "instruction-id": self.instruction_id,
            "app": self.app,
            "callee": self.callee,
            "caller": self.caller,
            "code": self.code,
            "digits": self.digits,
            "accepted-at": format_timestamp(self.accepted_at),
            "finishes-at": format_timestamp(self.finishes_at),
            "answered-with": self.answered_with,
            "callback": {
                "status": str(self.callback_status),
                "has-url": self.has_callback_url,
                "attempts": self.callback_attempts,
                "delivered": self.callbacks_delivered,
                "duplicated": self.duplicated,
            },
        }


@dataclass
class CallRegistry:
    """Placed calls in order, and counters; only touched from the event loop's thread."""

    calls: list[CallRecord] = field(default_factory=list)
    #: Instruction POSTs answered, by status code ("200", "401", ..., "timeout" for none).
    responses: Counter[str] = field(default_factory=Counter)
    #: Instruction POSTs received, by app path.
    requests_by_app: Counter[str] = field(default_factory=Counter)
    #: Faults injected into instruction POSTs, by kind ("429", "500", "503", "timeout").
    faults_injected: Counter[str] = field(default_factory=Counter)

    def add(self, record: CallRecord) -> None:
        self.calls.append(record)

    def count_response(self, app: str, status: str) -> None:
        self.requests_by_app[app] += 1
        self.responses[status] += 1

    def per_instruction_id(self) -> dict[str, int]:
        """Calls placed per instruction-id: any value above 1 means a duplicate POST got through."""
        counts = Counter(call.instruction_id for call in self.calls if call.instruction_id)
        return dict(counts)

    def select(
        self, *, instruction_id: str | None = None, callee: str | None = None
    ) -> list[CallRecord]:
        return [
            call
            for call in self.calls
            if (instruction_id is None or call.instruction_id == instruction_id)
            and (callee is None or call.callee == callee)
        ]

    def stats(self) -> dict[str, Any]:
        callbacks = Counter(str(call.callback_status) for call in self.calls)
        return {
            "requests": {
                "total": sum(self.responses.values()),
                "by-status": dict(sorted(self.responses.items())),
                "by-app": dict(sorted(self.requests_by_app.items())),
                "faults-injected": dict(sorted(self.faults_injected.items())),
            },
            "calls": {
                "total": len(self.calls),
                "by-code": {
                    str(code): count
                    for code, count in sorted(Counter(c.code for c in self.calls).items())
                },
            },
            "callbacks": {
                "by-status": dict(sorted(callbacks.items())),
                "delivered": sum(call.callbacks_delivered for call in self.calls),
                "duplicated": sum(1 for call in self.calls if call.duplicated),
            },
        }

    def clear(self) -> None:
        self.calls.clear()
        self.responses.clear()
        self.requests_by_app.clear()
        self.faults_injected.clear()
