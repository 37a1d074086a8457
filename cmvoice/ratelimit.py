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


def account_key(product_token: str) -> str:
    """A key part naming the account without revealing its token."""
    return hashlib.sha256(product_token.encode()).hexdigest()[:16]


class ConcurrencyLimiter:
    """Calls in progress: a slot is held from dispatch until the callback or its lease ends.

    Slots are taken by the dispatch claim (lua/begin.lua); this gives them back and counts them.
    """

    def __init__(self, client: redis.Redis, key: str, prefix: str = "cmvoice") -> None:
        self.client = client
        self.key = key
        self.prefix = prefix
        self._free = lua.load(client, "free_slot")

    def release(self, holder: str) -> None:
        """Give ``holder``'s slot back (and wake the pacer if it waits for one)."""
        self._free(keys=[self.key], args=[self.prefix, holder])

    def in_use(self) -> int:
        return int(self.client.zcard(self.key))
