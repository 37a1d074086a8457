"""Which broker a test run uses: the private Redis (the default), or a RabbitMQ vhost of its own.

``CMVOICE_TEST_BROKER=rabbitmq`` (``make rabbitmq``) runs the tests with RabbitMQ as Celery's
broker and the private Redis as the ledger only, so cmvoice publishes after each ledger
transition instead of inside it. Chosen once, at conftest import: the Celery app reads its
broker URL once per process.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from dataclasses import dataclass

import pytest

from cmvoice.config import Settings
from cmvoice.messages import ALL_QUEUES
from tests.support.rabbitmq import RabbitMQUnavailable, RabbitVhost

#: Chooses the broker of a run: ``redis`` (the default) or ``rabbitmq``.
BROKER_ENV = "CMVOICE_TEST_BROKER"
#: Set where RabbitMQ must be usable (CI): then a RabbitMQ pass that cannot reach it fails
#: instead of skipping every test.
REQUIRED_ENV = "CMVOICE_TEST_RABBITMQ_REQUIRED"
#: The queues a test may leave messages in: cmvoice's, and the default result tasks' queue.
TEST_QUEUES = (*ALL_QUEUES, Settings.model_fields["result_queue"].default)


@dataclass(frozen=True)
class BrokerChoice:
    """The broker of this run and the private Redis that holds the ledger."""

    #: ``redis`` or ``rabbitmq``.
    kind: str
    #: The broker's URL (CMVOICE_BROKER_URL of this process and its children).
    url: str
    #: The private Redis: the ledger, and the broker too when ``kind`` is ``redis``.
    redis_url: str
    vhost: RabbitVhost | None = None
    #: Why every test of this run is skipped (a RabbitMQ run without RabbitMQ), or None.
    skip_reason: str | None = None

    @property
    def is_rabbitmq(self) -> bool:
        return self.kind == "rabbitmq"

    @property
    def settings(self) -> dict[str, str]:
        """``broker_url`` and, with RabbitMQ, ``redis_url``: for Settings or worker_env."""
        if self.kind == "redis":
            return {"broker_url": self.url}
        return {"broker_url": self.url, "redis_url": self.redis_url}

    def remove(self) -> None:
        """Delete the run's vhost, if it has one (at most once)."""
        if self.vhost is not None:
            self.vhost.delete()


def choose(redis_url: str) -> BrokerChoice:
    """Read CMVOICE_TEST_BROKER, set CMVOICE_BROKER_URL (and CMVOICE_REDIS_URL) to match."""
    kind = os.environ.get(BROKER_ENV, "").strip().lower() or "redis"
    if kind not in ("redis", "rabbitmq"):
        raise pytest.UsageError(f"{BROKER_ENV}: must be redis or rabbitmq, not {kind!r}")
    choice = BrokerChoice(kind, redis_url, redis_url)
    if kind == "rabbitmq":
        try:
            vhost = RabbitVhost.create()
        except RabbitMQUnavailable as exc:
            if os.environ.get(REQUIRED_ENV):
                raise pytest.UsageError(
                    f"the RabbitMQ pass cannot run and {REQUIRED_ENV} is set: {exc}"
                ) from None
            # Every test skips; the Redis stays the broker so that nothing waits on RabbitMQ.
            choice = BrokerChoice(kind, redis_url, redis_url, skip_reason=f"no RabbitMQ: {exc}")
        else:
            # Deleted by a session fixture; this covers a run that ends before it (an error
            # at collection, a KeyboardInterrupt).
            atexit.register(_remove_quietly, vhost)
            choice = BrokerChoice(kind, vhost.url, redis_url, vhost=vhost)
    os.environ["CMVOICE_BROKER_URL"] = choice.url
    if choice.url == redis_url:
        os.environ.pop("CMVOICE_REDIS_URL", None)
    else:
        os.environ["CMVOICE_REDIS_URL"] = redis_url
    return choice


def _remove_quietly(vhost: RabbitVhost) -> None:
    with contextlib.suppress(RabbitMQUnavailable):
        if not vhost.deleted:
            print(f"deleting RabbitMQ vhost {vhost.name}", file=sys.stderr)
        vhost.delete()
