"""Shared fixtures: a private redis-server, the simulator, the receiver and a real Celery worker.

The Celery app reads its broker URL once per process, so the private Redis's port is chosen
here, at import, and put in the environment before anything reads the settings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from cmvoice.embedded_redis import EmbeddedRedis, free_port

# Real numbers of the right shape, so phonenumbers accepts them; the simulator's outcome rule
# reads the last two digits (..09 not answered, ..11 failed, ..12 rejected, else finished).
CALLER = "+31761234567"
CALLEE = "+31612345678"
TEST_SECRET = "test-callback-secret"
SIM_TOKEN = "00000000-0000-0000-0000-000000000000"

pytest_plugins = ["tests.simulator_fixtures"]

_REDIS_PORT = free_port()
os.environ["CMVOICE_BROKER_URL"] = f"redis://127.0.0.1:{_REDIS_PORT}/0"
os.environ["CMVOICE_CALLBACK_SECRET"] = TEST_SECRET
os.environ.pop("CMVOICE_PRODUCT_TOKEN", None)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A redis-server of our own on a free port: never the machine's shared one on 6379."""
    server = EmbeddedRedis(
        port=_REDIS_PORT, data_dir=tmp_path_factory.mktemp("redis"), persistent=False
    )
    with server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The private Redis's URL, emptied before the test.

    Kombu's queue bindings are kept: a worker or producer of this process declared them once
    and would not declare them again.
    """
    client = redis.Redis.from_url(redis_server.url)
    for key in client.scan_iter(count=1000):
        if not key.startswith(b"_kombu.binding."):
            client.delete(key)
    client.close()
    return redis_server.url


@pytest.fixture
def examples_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "examples"


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
    redis_url: str
    make_runtime: Callable[..., Any]

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


@pytest.fixture
def simulator_server() -> Iterator[Any]:
    """The CM simulator over real HTTP, at a thousandth of real time."""
    from cmvoice.serving import ServerThread
    from cmvoice.simulator import SimulatorConfig, create_app

    config = SimulatorConfig(
        time_scale=0.001, callback_retry_for_s=5.0, callback_first_backoff_s=0.05, seed=7
    )
    with ServerThread(create_app(config), name="simulator") as server:
        yield server


@pytest.fixture
def stack(redis_url: str, simulator_server: Any) -> Iterator[Stack]:
    """Simulator + receiver + a Runtime pointing at both; ``make_runtime`` applies settings."""
    from cmvoice.config import Settings
    from cmvoice.receiver import create_app
    from cmvoice.runtime import Runtime, get_runtime, set_runtime
    from cmvoice.serving import ServerThread

    receiver = ServerThread(create_app(get_runtime), name="receiver")
    receiver.start()

    def make_runtime(**overrides: Any) -> Runtime:
        values: dict[str, Any] = {
            "broker_url": redis_url,
            "api_url": simulator_server.url + "/voiceapi/v2",
            "callback_base_url": receiver.url,
            "http_timeout": 2.0,
            "rate_limit": "1000/s",
            "redial_delay": 0.05,
            "reconcile_interval": 0.2,
        }
        values.update(overrides)
        runtime = Runtime.from_settings(Settings(**values))
        set_runtime(runtime)
        return runtime

    make_runtime()
    try:
        yield Stack(simulator_server.url, receiver.url, redis_url, make_runtime)
    finally:
        receiver.stop()
        set_runtime(None)


@pytest.fixture
def worker(stack: Stack) -> Iterator[Any]:
    """A real Celery worker (thread pool) in this process, consuming every cmvoice queue."""
    from celery.contrib.testing.worker import start_worker

    import tests.result_tasks  # noqa: F401 - registers the application's result task
    from cmvoice.worker import ALL_QUEUES, app

    app.loader.import_default_modules()
    with start_worker(
        app,
        pool="threads",
        concurrency=8,
        perform_ping_check=False,
        queues=list(ALL_QUEUES),
        shutdown_timeout=30,
        loglevel="WARNING",
    ) as running:
        yield running
