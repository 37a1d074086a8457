"""What keeps one ``campaign start`` honest: its lock (one start at a time per campaign) and
the callees it has seen (duplicates), both in Redis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cmvoice import lua
from cmvoice.campaigns.store import CampaignStore
from cmvoice.errors import CampaignError
from cmvoice.lease import Lease
from cmvoice.replies import as_text

#: Seconds the enqueue lock lives unless renewed: a killed start frees it this fast.
ENQUEUE_LOCK_TTL_S = 30.0


class EnqueueGuards:
    """The campaign's enqueue lock (one start at a time) and its callees seen (duplicates)."""

    def __init__(self, store: CampaignStore) -> None:
        self.store = store
        self.redis = store.redis
        self._claim_callees = lua.load(self.redis, "claim_callees")

    def acquire_lock(self, campaign_id: str) -> Lease:
        """The campaign's enqueue lock, taken; the caller renews it per batch and releases it."""
        lock = Lease(self.redis, self.store.key(campaign_id, "lock"), ENQUEUE_LOCK_TTL_S)
        if not lock.take():
            raise CampaignError(
                f"another `campaign start` is enqueueing campaign {campaign_id}; if that process "
                f"is gone, its lock expires within {ENQUEUE_LOCK_TTL_S:g} s"
            )
        return lock

    def claim_callees(self, campaign_id: str, pairs: Sequence[tuple[str, int]]) -> list[int]:
        """For each (callee hash, line): the first line of the campaign that calls it."""
        args: list[Any] = []
        for digest, line in pairs:
            args += [digest, line]
        owners = self._claim_callees(keys=[self.store.key(campaign_id, "seen")], args=args)
        return [int(as_text(owner)) for owner in owners]
