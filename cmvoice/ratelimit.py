"""Account-wide limits in Redis: a GCRA rate limiter and a concurrency limiter.

Celery's own ``rate_limit`` is per worker; CM's limit is per account. Both limiters here live in
Redis and use its clock (``TIME``), so every worker process on every machine shares them and
their clocks do not matter.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from cmvoice.config import Rate

#: Times a caller waits at the send gate before going anyway; each wait is under an interval,
#: and the reservation already paced it, so more would only mean a clock gone wrong.
MAX_GATE_WAITS = 10

# GCRA with fair reservation. KEYS[1] holds the theoretical arrival time (TAT) in microseconds.
# ARGV[1] emission interval (us), ARGV[2] longest wait a caller accepts (us).
# The caller is given the slot at max(TAT, now) and waits until it; the TAT moves one interval
# on. A wait beyond the bound reserves nothing. Returns {reserved (1/0), wait_us}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now
if wait > tonumber(ARGV[2]) then return {0, wait} end
local new_tat = tat + interval
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
return {1, wait}
"""

# The send gate: the moment a reserved call really goes out. A caller that woke late for its
# slot must not go out right behind the next one, so consecutive sends are kept at least one
# interval apart, by Redis's clock. ARGV[1] interval (us). Returns 0 (go now) or the wait (us).
_GATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if now < last + interval then return last + interval - now end
redis.call('SET', KEYS[1], string.format('%d', now), 'PX', math.ceil(interval / 1000) + 1000)
return 0
"""

# Concurrency slots: a sorted set of holder -> lease expiry (ms). Expired holders are dropped.
# ARGV[1] holder, ARGV[2] limit, ARGV[3] lease (ms). Returns 1 when the holder has a slot.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + 60000)
  return 1
end
return 0
"""


def account_key(product_token: str) -> str:
    """A key part naming the account without revealing its token."""
    return hashlib.sha256(product_token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Reservation:
    """The outcome of asking for a rate slot: granted (wait ``wait_s``, then go) or refused."""

    granted: bool
    wait_s: float


class GcraLimiter:
    """A generic cell rate limiter shared through Redis.

    Args:
        client: redis-py client.
        key: the limited thing (an account, a campaign).
        rate: calls per period; the gap between two calls is ``rate.interval_s``.
    """

    def __init__(self, client: redis.Redis, key: str, rate: Rate) -> None:
        self.key = key
        self.rate = rate
        self._reserve = client.register_script(_RESERVE)
        self._gate = client.register_script(_GATE)

    @property
    def _interval_us(self) -> int:
        return max(1, round(self.rate.interval_s * 1_000_000))

    def reserve(self, max_wait_s: float) -> Reservation:
        """Reserve the next free slot if it is at most ``max_wait_s`` away."""
        granted, wait_us = self._reserve(
            keys=[self.key], args=[self._interval_us, round(max_wait_s * 1_000_000)]
        )
        return Reservation(granted=bool(granted), wait_s=int(wait_us) / 1_000_000)

    def wait_turn(
        self, reservation: Reservation, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        """Sleep until the reserved slot, then pass the send gate (see ``_GATE``)."""
        if reservation.wait_s > 0:
            sleep(reservation.wait_s)
        for _ in range(MAX_GATE_WAITS):
            wait_us = int(self._gate(keys=[self.key + ":sent"], args=[self._interval_us]))
            if wait_us <= 0:
                return
            sleep(wait_us / 1_000_000)


class ConcurrencyLimiter:
    """Caps calls in progress: a slot is held from dispatch until the callback or its lease ends."""

    def __init__(self, client: redis.Redis, key: str, limit: int, lease_s: float) -> None:
        self.client = client
        self.key = key
        self.limit = limit
        self.lease_ms = int(lease_s * 1000)
        self._acquire = client.register_script(_ACQUIRE)

    def acquire(self, holder: str) -> bool:
        """Take (or renew) a slot for ``holder``; False when all slots are taken."""
        return bool(self._acquire(keys=[self.key], args=[holder, self.limit, self.lease_ms]))

    def release(self, holder: str) -> None:
        self.client.zrem(self.key, holder)

    def in_use(self) -> int:
        return int(self.client.zcard(self.key))
