"""Campaign tasks (queue ``cmvoice.campaigns``), and the hook counting a campaign's ended calls."""

from __future__ import annotations

from cmvoice.campaigns import RELEASE_HELD_TASK, CampaignStore
from cmvoice.outcomes import CallOutcome, on_result
from cmvoice.runtime import Runtime, get_runtime
from cmvoice.worker import CAMPAIGNS_QUEUE, app

_store: CampaignStore | None = None


def _campaigns(runtime: Runtime) -> CampaignStore:
    """One store per runtime: the hook runs for every callback, and need not rebuild it."""
    global _store
    if _store is None or _store.runtime is not runtime:
        _store = CampaignStore(runtime)
    return _store


@app.task(name=RELEASE_HELD_TASK, queue=CAMPAIGNS_QUEUE, acks_late=True, ignore_result=True)
def release_held(campaign_id: str) -> int:
    """Dispatch the calls a paused campaign held back, if it runs again (sent after a resume)."""
    return _campaigns(get_runtime()).release_held(campaign_id)


@on_result
def count_ended_call(outcome: CallOutcome) -> None:
    """Count each ended attempt of a campaign's call, per minute: ``campaign status`` speed."""
    if outcome.campaign_id:
        _campaigns(get_runtime()).record_ended(outcome.campaign_id)
