"""What the tests share besides fixtures: the numbers they call, the test secret, polling, Stack."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

# Real numbers of the right shape, so phonenumbers accepts them; the simulator's outcome rule
# reads the last two digits (..09 not answered, ..11 failed, ..12 rejected, else finished).
CALLER = "+31761234567"
CALLEE = "+31612345678"
TEST_SECRET = "test-callback-secret"
SIM_TOKEN = "00000000-0000-0000-0000-000000000000"


def wait_for(
    condition: Callable[[], Any], timeout_s: float = 15.0, interval_s: float = 0.02
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s: {condition}")
        time.sleep(interval_s)


@dataclass
class Stack:
    """The running parts of one end-to-end test."""

    simulator_url: str
    receiver_url: str
    #: The ledger's Redis (the broker too, unless the run's broker is RabbitMQ).
    redis_url: str
    make_runtime: Callable[..., Any]
    #: ``broker_url`` (and ``redis_url`` with RabbitMQ) of the run: settings for a child process.
    broker: dict[str, str]

    def sim(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(
            method, f"{self.simulator_url}/_sim{path}", timeout=10, **kwargs
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def calls(self) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = self.sim("GET", "/calls")["calls"]
        return calls

    def posts(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.sim("GET", "/stats")
        return stats

    def scenario(self, callee: str, *outcomes: dict[str, Any]) -> None:
        self.sim("POST", "/scenarios", json={"callee": callee, "outcomes": list(outcomes)})

    def faults(self, **faults: Any) -> None:
        self.sim("POST", "/faults", json=faults)
