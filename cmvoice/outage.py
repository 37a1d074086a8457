"""The one boundary where Redis's and the broker's connection errors become BrokerUnavailable.

Neither redis nor kombu is imported here: an error can only be theirs if they were loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from cmvoice.errors import BrokerUnavailable
from cmvoice.privacy import redact_url


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis or the broker cannot be reached (now)."""
    redis = sys.modules.get("redis")
    if redis is not None and isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return True
    kombu_exceptions = sys.modules.get("kombu.exceptions")
    return kombu_exceptions is not None and isinstance(exc, kombu_exceptions.OperationalError)


def unavailable(exc: BaseException, url: str) -> BrokerUnavailable:
    """The BrokerUnavailable an outage is translated into, naming ``url`` (no password)."""
    return BrokerUnavailable(
        f"cannot reach Redis or the broker at {redact_url(url)} ({exc}). Start `cmvoice dev` "
        "or `cmvoice worker`, or set CMVOICE_BROKER_URL."
    )


@contextmanager
def broker_boundary(url: str) -> Iterator[None]:
    """Translate an outage raised inside into BrokerUnavailable."""
    try:
        yield
    except Exception as exc:
        if not is_outage(exc):
            raise
        raise unavailable(exc, url) from exc
