"""What keeps one ``campaign start`` honest: its lock (one start at a time per campaign) and
the callees it has seen (duplicates), both in Redis."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from cmvoice import lua
from cmvoice.campaigns.store import CampaignStore
from cmvoice.errors import CampaignError
from cmvoice.replies import as_text

#: Milliseconds the enqueue lock lives unless refreshed: a killed start frees it this fast.
ENQUEUE_LOCK_TTL_MS = 30_000


class EnqueueGuards:
    """The campaign's enqueue lock (one start at a time) and its callees seen (duplicates)."""

    def __init__(self, store: CampaignStore) -> None:
        self.store = store
        self.redis = store.redis
        self._claim_callees = lua.load(self.redis, "claim_callees")
        self._lock_update = lua.load(self.redis, "lock_update")

    def acquire_lock(self, campaign_id: str) -> str:
        token = secrets.token_hex(8)
        if not self.redis.set(
            self.store.key(campaign_id, "lock"), token, nx=True, px=ENQUEUE_LOCK_TTL_MS
        ):
            raise CampaignError(
                f"another `campaign start` is enqueueing campaign {campaign_id}; if that process "
                f"is gone, its lock expires within {ENQUEUE_LOCK_TTL_MS // 1000} s"
            )
        return token

    def refresh_lock(self, campaign_id: str, token: str) -> bool:
        key = self.store.key(campaign_id, "lock")
        return bool(self._lock_update(keys=[key], args=[token, ENQUEUE_LOCK_TTL_MS]))

    def release_lock(self, campaign_id: str, token: str) -> None:
        self._lock_update(keys=[self.store.key(campaign_id, "lock")], args=[token, 0])

    def claim_callees(self, campaign_id: str, pairs: Sequence[tuple[str, int]]) -> list[int]:
        """For each (callee hash, line): the first line of the campaign that calls it."""
        args: list[Any] = []
        for digest, line in pairs:
            args += [digest, line]
        owners = self._claim_callees(keys=[self.store.key(campaign_id, "seen")], args=args)
        return [int(as_text(owner)) for owner in owners]
