"""A lease in Redis: one holder at a time, renewed by its holder, gone when not renewed.

The pacer holds one to be the only pacer running; ``campaign start`` holds one per campaign so
that two starts never enqueue the same file at once. A holder killed mid-work is replaced once
its lease runs out.
"""

from __future__ import annotations

import secrets

import redis

from cmvoice import lua


class Lease:
    """The lease at ``key``, held under ``token`` (a fresh one unless given)."""

    def __init__(
        self, client: redis.Redis, key: str, ttl_s: float, token: str | None = None
    ) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_s * 1000)
        self.token = token or secrets.token_hex(8)
        self._update = lua.load(client, "lock_update")

    def take(self) -> bool:
        """Take the lease if nobody holds it."""
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """Extend the lease if it is still ours; False when it ran out or another holds it."""
        return bool(self._update(keys=[self.key], args=[self.token, self.ttl_ms]))

    def hold(self) -> bool:
        """Renew the lease if ours, or take it if free; False when another holds it."""
        return self.renew() or self.take()

    def release(self) -> None:
        """Give the lease up, if it is still ours."""
        self._update(keys=[self.key], args=[self.token, 0])
