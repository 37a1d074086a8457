"""Shared fixtures: a private redis-server, the simulator, the receiver and a real Celery worker.

The Celery app reads its broker URL once per process, so the private Redis's port is chosen
here, at import, and put in the environment before anything reads the settings. That Redis is
the broker too, unless ``CMVOICE_TEST_BROKER=rabbitmq`` (tests/support/broker_choice.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cmvoice.embedded_redis import EmbeddedRedis, free_port
from tests.support import broker_choice
from tests.support.broker import purge
from tests.support.broker_choice import TEST_QUEUES
from tests.support.stack import TEST_SECRET, Stack
from tests.support.workers import thread_worker

pytest_plugins = [
    "tests.support.task_events",
    "tests.support.simulator_fixtures",
    "tests.support.browser",
    "tests.support.api_fixtures",
    "tests.support.dev_run",
]

_REDIS_PORT = free_port()
_REDIS_URL = f"redis://127.0.0.1:{_REDIS_PORT}/0"
BROKER = broker_choice.choose(_REDIS_URL)
os.environ["CMVOICE_CALLBACK_SECRET"] = TEST_SECRET
os.environ.pop("CMVOICE_PRODUCT_TOKEN", None)
# The suite runs at any hour on any day: calls may be placed all day unless a test sets its own
# calling window (the default, 08:00-21:00 callee-local, would hold every campaign at night).
os.environ["CMVOICE_CALLING_WINDOW"] = "00:00-24:00"
os.environ["CMVOICE_CALLING_DAYS"] = "mon-sun"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With RabbitMQ as the broker, skip what needs kombu's Redis transport (or everything,
    when this run wanted RabbitMQ and has none)."""
    if not BROKER.is_rabbitmq:
        return
    for item in items:
        if BROKER.skip_reason:
            item.add_marker(pytest.mark.skip(reason=BROKER.skip_reason))
        elif item.get_closest_marker("redis_broker"):
            reason = "needs Redis as the broker (kombu's Redis transport); this run's is RabbitMQ"
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _broker_vhost() -> Iterator[None]:
    """The RabbitMQ run's vhost is deleted when the session ends, whatever its outcome."""
    yield
    if BROKER.vhost is not None:
        from cmvoice.worker import app

        # Our own connections first, so that deleting the vhost does not cut them mid-use.
        app.close()
        BROKER.remove()


@pytest.fixture
def rabbitmq_url(redis_url: str) -> str:
    """This run's RabbitMQ vhost, its queues emptied; the test is skipped in a Redis run."""
    if not BROKER.is_rabbitmq:
        pytest.skip("runs in the RabbitMQ pass: make rabbitmq (CMVOICE_TEST_BROKER=rabbitmq)")
    return BROKER.url


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
    """The private Redis's URL, emptied before the test, and the broker's queues with it.

    Kombu's queue bindings are kept: a worker or producer of this process declared them once
    and would not declare them again.
    """
    client = redis.Redis.from_url(redis_server.url)
    for key in client.scan_iter(count=1000):
        if not key.startswith(b"_kombu.binding."):
            client.delete(key)
    client.close()
    if BROKER.is_rabbitmq:
        purge(TEST_QUEUES)
    return redis_server.url


@pytest.fixture
def examples_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "examples"


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
            **BROKER.settings,
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
        yield Stack(simulator_server.url, receiver.url, redis_url, make_runtime, BROKER.settings)
    finally:
        receiver.stop()
        set_runtime(None)


@pytest.fixture
def worker(stack: Stack) -> Iterator[Any]:
    """A real Celery worker (thread pool) in this process, consuming every cmvoice queue."""
    import tests.support.result_tasks  # noqa: F401 - registers the application's result task
    from cmvoice.messages import ALL_QUEUES
    from cmvoice.runtime import get_runtime
    from cmvoice.worker import app

    app.loader.import_default_modules()
    # cmvoice's queues, and the one of the application's result tasks it includes.
    with thread_worker(app, [*ALL_QUEUES, get_runtime().settings.result_queue]) as running:
        yield running
