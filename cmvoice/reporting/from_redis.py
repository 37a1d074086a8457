"""campaign_page_view: a CampaignPageView of a campaign as Redis holds it now (page and --html)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from cmvoice.calls import CallState
from cmvoice.campaigns.model import RowOutcome
from cmvoice.campaigns.store import CampaignStore
from cmvoice.reporting.view import CampaignPageView

#: Seconds in the minutes the store counts calls in (minute number = Redis time // 60,000 ms).
_MINUTE_S = 60


def minute_start(minute: int) -> datetime:
    """The start of minute number ``minute`` since the epoch (as the store keys them), UTC."""
    return datetime.fromtimestamp(minute * _MINUTE_S, tz=UTC)


def campaign_page_view(store: CampaignStore, campaign_id: str) -> CampaignPageView:
    """Everything the campaign page shows, read from the store; CampaignError if unknown.

    Counters and codes come from ``progress`` (kept with each call record, so they add up),
    the charts from the per-minute counts, and the errors table from the rejected rows: each
    invalid row counted once per rule it broke (duplicates have their own counter).
    """
    progress = store.progress(campaign_id)
    campaign = progress.campaign
    placed, outcomes = store.per_minute(campaign_id)
    errors_by_rule = Counter(
        f"{error.field}: {error.rule}"
        for _, error, outcome in store.rejected_entries(campaign_id)
        if outcome is RowOutcome.INVALID
    )
    # EXPIRED calls ended unplaced (their deadline passed): shown apart from the other ends.
    expired = progress.counts.get(CallState.EXPIRED, 0)
    return CampaignPageView(
        campaign_id=campaign.campaign_id,
        name=campaign.name,
        kind=campaign.kind,
        phase=progress.phase,
        generated_at=datetime.fromtimestamp(progress.now_ms / 1000, tz=UTC),
        rows_read=campaign.rows_read,
        enqueued=campaign.enqueued,
        invalid=campaign.invalid,
        duplicates=campaign.duplicates,
        backlog=progress.backlog.total,
        in_flight=progress.in_flight,
        done=progress.done - expired,
        expired=expired,
        states={state.value: count for state, count in progress.counts.items()},
        result_codes={
            int(code): count
            for code, count in progress.codes.items()
            if code.lstrip("-").isdigit() and count
        },
        placed_per_minute=[(minute_start(m), placed[m]) for m in sorted(placed)],
        outcomes_per_minute=[(minute_start(m), outcomes[m]) for m in sorted(outcomes)],
        errors_by_rule=dict(errors_by_rule.most_common()),
        eta_s=progress.eta_s,
        rate=campaign.rate,
    )
