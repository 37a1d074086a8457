"""Callback delivery: POST a finished-event to its URL, retrying connection errors and 5xx."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from cmvoice._version import __version__

logger = logging.getLogger(__name__)

#: Seconds a callback keeps being retried before the simulator gives up on it.
DEFAULT_RETRY_FOR_S = 30.0
#: First retry delay; each retry doubles it, up to DEFAULT_MAX_BACKOFF_S.
DEFAULT_FIRST_BACKOFF_S = 0.5
DEFAULT_MAX_BACKOFF_S = 8.0
#: Seconds one callback POST may take (connect and read).
DEFAULT_POST_TIMEOUT_S = 5.0
#: Callback POSTs in flight at once; more wait their turn without blocking request handling.
DEFAULT_WORKERS = 32


class DeliveryStatus(StrEnum):
    """Where a call's callback stands."""

    PENDING = "pending"  # the call is still "in progress", or being delivered
    DELIVERED = "delivered"  # the target answered 2xx
    REFUSED = "refused"  # the target answered 3xx or 4xx: not retried
    FAILED = "failed"  # connection errors or 5xx until the retry time ran out
    DROPPED = "dropped"  # fault injection: never sent
    NO_URL = "no-url"  # neither the instruction nor the simulator has a callback URL
    CANCELLED = "cancelled"  # the simulator was reset or stopped first


@dataclass(frozen=True)
class Delivery:
    """The end of one delivery: status, POSTs made, and the last answer or error."""

    status: DeliveryStatus
    attempts: int
    last_result: str


class CallbackSender:
    """Sends callbacks from a thread pool, so the event loop never waits on a slow receiver.

    Retry delays are awaited on the event loop (no thread is held while waiting).

    Args:
        retry_for_s: give up once the next retry would start later than this after the first.
        first_backoff_s: delay before the first retry; doubled per retry up to max_backoff_s.
        jitter: returns a factor applied to each delay (FaultInjector.jitter).
    """

    def __init__(
        self,
        *,
        retry_for_s: float = DEFAULT_RETRY_FOR_S,
        first_backoff_s: float = DEFAULT_FIRST_BACKOFF_S,
        max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
        post_timeout_s: float = DEFAULT_POST_TIMEOUT_S,
        workers: int = DEFAULT_WORKERS,
        jitter: Callable[[], float] = lambda: 1.0,
    ) -> None:
        self.retry_for_s = retry_for_s
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.post_timeout_s = post_timeout_s
        self._jitter = jitter
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sim-callback")
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=workers, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        """Wait for POSTs in flight (each bounded by post_timeout_s), then close connections."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._session.close()

    def _post(self, url: str, body: bytes) -> int:
        response = self._session.post(
            url,
            data=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": f"cmvoice-simulator/{__version__}",
            },
            timeout=self.post_timeout_s,
            # CM posts to the URL it was given; a redirect is the receiver's problem.
            allow_redirects=False,
        )
        response.close()
        return response.status_code

    @staticmethod
    def should_retry(status: int | None) -> bool:
        """Retry connection errors (None) and 5xx; any other answer is final."""
        return status is None or status >= 500

    def backoff_s(self, retry: int) -> float:
        """Delay before retry number ``retry`` (1-based): exponential, capped, jittered."""
        return min(self.max_backoff_s, self.first_backoff_s * 2.0 ** (retry - 1)) * self._jitter()

    async def deliver(self, url: str, payload: dict[str, Any], *, label: str) -> Delivery:
        """POST ``payload`` to ``url`` until it is accepted, refused, or retry_for_s runs out.

        ``label`` names the call in log lines; it must hold no phone number or code.
        """
        loop = asyncio.get_running_loop()
        body = json.dumps(payload).encode()
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            status: int | None
            try:
                status = await loop.run_in_executor(self._executor, self._post, url, body)
                result = f"HTTP {status}"
            except requests.RequestException as exc:
                status, result = None, type(exc).__name__
            if not self.should_retry(status):
                assert status is not None
                if 200 <= status < 300:
                    return Delivery(DeliveryStatus.DELIVERED, attempts, result)
                logger.warning("callback for %s refused with %s: not retried", label, result)
                return Delivery(DeliveryStatus.REFUSED, attempts, result)
            delay_s = self.backoff_s(attempts)
            elapsed_s = time.monotonic() - started
            if elapsed_s + delay_s > self.retry_for_s:
                logger.warning(
                    "callback for %s given up after %d attempt(s) in %.1f s; last: %s",
                    label,
                    attempts,
                    elapsed_s,
                    result,
                )
                return Delivery(DeliveryStatus.FAILED, attempts, result)
            logger.info("callback for %s: %s, retry in %.2f s", label, result, delay_s)
            await asyncio.sleep(delay_s)
