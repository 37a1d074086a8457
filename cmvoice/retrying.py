"""RetryPolicy: the one place that decides what a failed POST to CM leads to, and why.

It follows the dispatch table (docs/architecture.md, "Dispatch") row by row; ``jitter`` is its
own method so tests can replace it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from cmvoice.errors import (
    AuthenticationFailed,
    CmThrottled,
    OutcomeUnknown,
    RequestRefused,
    VoiceApiError,
)

#: First backoff after an error, in seconds; it doubles with every error attempt.
DEFAULT_BACKOFF_BASE_S = 1.0
#: Wait after a 429 that carried no Retry-After.
DEFAULT_THROTTLE_WAIT_S = 1.0
#: Doublings of the backoff counted at most: 2.0**1000 is still a float, 2**1024 is not.
MAX_DOUBLINGS = 1000


@dataclass(frozen=True)
class Decision:
    """What to do with an instruction after a failed POST."""

    action: Literal["retry", "fail", "unknown"]
    reason: str
    delay_s: float = 0.0
    counts_as_attempt: bool = True


class RetryPolicy:
    """Maps each VoiceApiError to retry (with a delay), fail, or unknown.

    Args:
        max_retries: error retries before giving up (429s do not count).
        backoff_base_s: first backoff; it doubles per attempt.
        backoff_max_s: cap of one backoff.
    """

    def __init__(
        self,
        max_retries: int,
        *,
        backoff_base_s: float = DEFAULT_BACKOFF_BASE_S,
        backoff_max_s: float = 60.0,
    ) -> None:
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s

    def decide(self, exc: VoiceApiError, attempts: int) -> Decision:
        """``attempts`` is the number of error attempts already spent on this instruction."""
        reason = str(exc)
        if isinstance(exc, CmThrottled):
            # CM asked us to slow down: our request was fine, so this spends no error attempt.
            wait = exc.retry_after_s if exc.retry_after_s is not None else DEFAULT_THROTTLE_WAIT_S
            return Decision("retry", reason, delay_s=wait, counts_as_attempt=False)
        if isinstance(exc, AuthenticationFailed):
            # A bad token fails every call alike: retrying would only hammer CM.
            return Decision("fail", reason)
        if isinstance(exc, RequestRefused):
            # Our request is wrong; sending it again gives the same answer.
            return Decision("fail", reason)
        if isinstance(exc, OutcomeUnknown) or not exc.retryable:
            # CM may have placed the call: a blind retry could ring the callee twice.
            return Decision("unknown", reason)
        # Never reached CM, or CM not serving (502/503/504): safe to send again, later.
        if attempts >= self.max_retries:
            return Decision("fail", f"gave up after {attempts + 1} attempts: {reason}")
        return Decision("retry", reason, delay_s=self.backoff_s(attempts))

    def backoff_s(self, attempts: int) -> float:
        """Exponential backoff, capped, with jitter so that retries of many calls spread out."""
        # Any cap is reached long before MAX_DOUBLINGS (an overflowing product is inf, which
        # the cap takes); without the bound, attempt 1024 raised OverflowError.
        doublings = min(attempts, MAX_DOUBLINGS)
        delay = min(self.backoff_max_s, self.backoff_base_s * 2.0**doublings)
        return self.jitter(delay)

    def jitter(self, delay_s: float) -> float:
        """'Equal jitter': between half the delay and the whole of it."""
        return delay_s / 2 + random.uniform(0, delay_s / 2)
