"""Account-wide limits in Redis: concurrency slots, and the key that names an account.

CM's limits are per account; Celery's ``rate_limit`` is per worker. The account's rate timeline
(a GCRA: the theoretical arrival time of the next send) and its slots live in Redis and use its
clock, so every worker process on every machine shares them. Taking a rate turn and a slot is
part of the dispatch claim (lua/begin.lua); this module reads them and gives slots back.
"""

from __future__ import annotations

import hashlib

import redis

from cmvoice import lua
from cmvoice.replies import as_int


def account_key(product_token: str) -> str:
    """A key part naming the account without revealing its token."""
    return hashlib.sha256(product_token.encode()).hexdigest()[:16]


class ConcurrencyLimiter:
    """Calls in progress: a slot is held from dispatch until the callback or its lease ends."""

    def __init__(
        self, client: redis.Redis, key: str, limit: int, lease_s: float, prefix: str = "cmvoice"
    ) -> None:
        self.client = client
        self.key = key
        self.limit = limit
        self.lease_ms = int(lease_s * 1000)
        self.prefix = prefix
        self._free = lua.load(client, "free_slot")

    def release(self, holder: str) -> None:
        """Give ``holder``'s slot back (and wake the pacer if it waits for one)."""
        self._free(keys=[self.key], args=[self.prefix, holder])

    def in_use(self) -> int:
        return int(self.client.zcard(self.key))


def rate_backlog_s(client: redis.Redis, account_hash_key: str, now_us: int) -> float:
    """How far ahead of now the account's rate turns are already taken, in seconds."""
    tat = as_int(client.hget(account_hash_key, "tat"))
    return max(tat - now_us, 0) / 1_000_000
