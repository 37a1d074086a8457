"""The account's rate limit holds across worker processes, measured where CM would see it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests

from cmvoice.calls import CallState
from cmvoice.embedded_redis import free_port
from cmvoice.producer import enqueue
from cmvoice.worker import app
from tests.support.stack import CALLER, Stack, wait_for
from tests.support.workers import CMVOICE, WorkerProcess

LIMIT_PER_S = 20
CALLS = 70


def busiest_second(moments: list[datetime]) -> int:
    """The most calls in any half-open window of one second."""
    times = sorted(moment.timestamp() for moment in moments)
    best = 0
    end = 0
    for start_index, start in enumerate(times):
        while end < len(times) and times[end] < start + 1.0:
            end += 1
        best = max(best, end - start_index)
    return best


@pytest.fixture
def simulator_process(tmp_path: Path) -> Iterator[str]:
    """``cmvoice simulator`` in a process of its own, so its clock is not this process's load."""
    port = free_port()
    log = (tmp_path / "simulator.log").open("wb")
    process = subprocess.Popen(
        [CMVOICE, "simulator", "--port", str(port), "--time-scale", "0.001"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        try:
            return requests.get(url + "/_sim/health", timeout=0.5).ok
        except requests.ConnectionError:
            return False

    try:
        wait_for(answering, timeout_s=20, interval_s=0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.mark.slow
def test_three_worker_processes_never_exceed_the_account_rate(
    stack: Stack, simulator_process: str, tmp_path: Path
) -> None:
    # Given three worker processes sharing one account limit of 20 calls a second
    settings = {
        "broker_url": stack.redis_url,
        "api_url": simulator_process + "/voiceapi/v2",
        "callback_base_url": stack.receiver_url,
        "rate_limit": f"{LIMIT_PER_S}/s",
        "max_rate_wait": 1,
    }
    runtime = stack.make_runtime(**settings)
    workers = [
        WorkerProcess(settings, tmp_path / f"w{n}.log", concurrency=8, name=f"w{n}")
        for n in range(3)
    ]
    try:
        for process in workers:
            process.wait_ready(app)

        # When 70 calls are enqueued at once
        tickets = [
            enqueue({"callee": f"+316123{n:05d}", "caller": CALLER, "prompt": "Hello."})
            for n in range(CALLS)
        ]
        wait_for(
            lambda: all(
                runtime.ledger.get(t.instruction_id).state is CallState.FINISHED for t in tickets
            ),
            timeout_s=60,
            interval_s=0.2,
        )
    finally:
        for process in workers:
            process.stop()

    # Then CM never saw more than the limit (+1 for the window edge) in any second
    calls = requests.get(simulator_process + "/_sim/calls", timeout=5).json()["calls"]
    accepted = [datetime.fromisoformat(call["accepted-at"]) for call in calls]
    assert len(accepted) == CALLS
    span_s = max(accepted).timestamp() - min(accepted).timestamp()
    print(f"{CALLS} calls in {span_s:.2f}s; busiest second: {busiest_second(accepted)}")
    assert busiest_second(accepted) <= LIMIT_PER_S + 1
    # and every worker did some of the work (the limit is shared, not per process)
    logs = [p.log_path.read_text() for p in workers]
    assert sum("placed notification call" in log for log in logs) >= 2
