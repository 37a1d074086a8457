"""The one boundary where Redis's and the broker's connection errors become BrokerUnavailable.

Neither redis nor kombu is imported here: an error can only be theirs if they were loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from cmvoice.errors import BrokerUnavailable
from cmvoice.privacy import redact_url


def _is_redis_error(exc: BaseException) -> bool:
    redis = sys.modules.get("redis")
    return redis is not None and isinstance(exc, redis.ConnectionError | redis.TimeoutError)


def _is_broker_error(exc: BaseException) -> bool:
    # kombu re-raises its transports' connection errors (Redis's too) as OperationalError.
    kombu_exceptions = sys.modules.get("kombu.exceptions")
    return kombu_exceptions is not None and isinstance(exc, kombu_exceptions.OperationalError)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis or the broker cannot be reached (now)."""
    return _is_redis_error(exc) or _is_broker_error(exc)


def unavailable(exc: BaseException, redis_url: str, broker_url: str) -> BrokerUnavailable:
    """The BrokerUnavailable an outage is translated into, naming the URL that failed (no
    password): the broker's for kombu's errors, the ledger's Redis for redis-py's."""
    if redis_url == broker_url:
        what, url = "Redis", redis_url
        fix = "Start `cmvoice dev` or `cmvoice worker`, or set CMVOICE_BROKER_URL."
    elif _is_broker_error(exc):
        what, url = "the broker", broker_url
        fix = "Start it (`cmvoice dev` if it is the embedded Redis), or set CMVOICE_BROKER_URL."
    else:
        what, url = "Redis (the ledger)", redis_url
        fix = "Start it, or set CMVOICE_REDIS_URL."
    return BrokerUnavailable(f"cannot reach {what} at {redact_url(url)} ({exc}). {fix}")


@contextmanager
def broker_boundary(redis_url: str, broker_url: str) -> Iterator[None]:
    """Translate an outage raised inside into BrokerUnavailable."""
    try:
        yield
    except Exception as exc:
        if not is_outage(exc):
            raise
        raise unavailable(exc, redis_url, broker_url) from exc
