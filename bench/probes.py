"""What the pacing benchmark observes of calls: interactive OTP probes, and the simulator's
view of every call (when it accepted it, how long it lasts, how many were in progress at once)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import requests

from cmvoice.runtime import Runtime

CALLER = "+31761234567"


@dataclass
class Probes:
    """Interactive OTP calls enqueued every ``every_s`` in a thread: (instruction id, time)."""

    every_s: float
    #: Callees, one per probe of the run (a number may be called 5 times an hour).
    numbers: Iterator[str]
    sent: list[tuple[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Probes:
        self._thread = threading.Thread(target=self._run, name="probes", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        from cmvoice.producer import enqueue

        while not self._stop.wait(self.every_s):
            instruction = {"callee": next(self.numbers), "caller": CALLER, "code": "4321"}
            started = time.time()
            ticket = enqueue(instruction, kind="otp")
            self.sent.append((ticket.instruction_id, started))

    def latencies_ms(self, accepted: dict[str, float], after: float = 0.0) -> list[float]:
        """enqueue -> POST of the probes sent at ``after`` or later (missing: not placed)."""
        return [
            (accepted[iid] - sent) * 1000
            for iid, sent in self.sent
            if sent >= after and iid in accepted
        ]


def accepted_times(sim_url: str) -> tuple[dict[str, float], dict[str, float]]:
    """(acceptance time, planned length) in seconds of every call the simulator placed."""
    calls = requests.get(sim_url + "/_sim/calls", timeout=60).json()["calls"]
    accepted, lengths = {}, {}
    for call in calls:
        start = datetime.fromisoformat(call["accepted-at"]).timestamp()
        accepted[call["instruction-id"]] = start
        lengths[call["instruction-id"]] = datetime.fromisoformat(call["finishes-at"]).timestamp()
        lengths[call["instruction-id"]] -= start
    return accepted, lengths


def most_at_once(accepted: dict[str, float], lengths: dict[str, float]) -> int:
    """The most calls in progress at the simulator at any moment (the slots' check)."""
    events = sorted(
        [(at, 1) for at in accepted.values()]
        + [(accepted[iid] + length, -1) for iid, length in lengths.items()]
    )
    most = current = 0
    for _, change in events:
        current += change
        most = max(most, current)
    return most


def sent_ms(runtime: Runtime, instruction_ids: list[str]) -> list[float]:
    """created -> sent of calls in the ledger (Redis's clock): the wait inside cmvoice."""
    records = [runtime.ledger.get(iid) for iid in instruction_ids]
    return [
        float(r.get_int("sent_at") - r.get_int("created_at"))
        for r in records
        if r is not None and r.get_int("sent_at")
    ]
