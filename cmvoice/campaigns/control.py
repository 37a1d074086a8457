"""Campaign controls: pause, resume and cancel act on the backlog at once."""

from __future__ import annotations

from cmvoice.calls import CallState
from cmvoice.campaigns.model import CampaignStatus
from cmvoice.campaigns.store import CampaignStore
from cmvoice.errors import CampaignError


def pause(store: CampaignStore, campaign_id: str) -> int:
    """Release none of the campaign's calls until resumed (calls ringing finish); Redis time.

    Takes effect at once: the pacer's release checks the status atomically, and so does every
    dispatch before its POST, putting a call that was already released back in the backlog.
    """
    allowed = (CampaignStatus.RUNNING, CampaignStatus.PAUSED)
    changed, before, now_ms = store.change_status(campaign_id, CampaignStatus.PAUSED, allowed)
    if not changed:
        raise CampaignError(f"campaign {campaign_id} is {before.value}; it cannot be paused")
    return now_ms


def resume(store: CampaignStore, campaign_id: str) -> int:
    """Release the campaign's calls again; returns how many wait in its backlog.

    The pacer is woken in the same step as the status change: nothing else is needed.
    """
    allowed = (CampaignStatus.PAUSED, CampaignStatus.RUNNING)
    changed, before, now_ms = store.change_status(campaign_id, CampaignStatus.RUNNING, allowed)
    if not changed:
        raise CampaignError(f"campaign {campaign_id} is {before.value}; it cannot be resumed")
    return store.backlog(campaign_id, now_ms).total


def cancel(store: CampaignStore, campaign_id: str) -> tuple[int, int]:
    """Cancel: the backlog ends CANCELLED at once, no dispatch task run for any of its calls;
    calls already ringing finish. Returns (calls cancelled, Redis time of the cancel in ms).

    The status changes first, so the pacer releases none of them meanwhile; a call released
    just before is refused by its dispatch (the status is checked before each POST).
    """
    _, _, now_ms = store.change_status(campaign_id, CampaignStatus.CANCELLED, tuple(CampaignStatus))
    cancelled = store.end_backlog(campaign_id, CallState.CANCELLED, "campaign cancelled")
    store.redis.srem(store.keys.active_campaigns(), campaign_id)
    return cancelled, now_ms
