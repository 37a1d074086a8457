"""CampaignPageView: the plain data a campaign page shows, filled by whoever reads the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class CampaignPageView:
    """One campaign at one moment, as the campaign page shows it.

    Datetimes should be timezone-aware; a naive one is taken as UTC. Minutes in the two
    per-minute series are the start of each minute; minutes with nothing may be left out.

    The progress bar counts ``done + expired`` as settled, out of ``enqueued`` (or of
    ``done + expired + in_flight + backlog`` when that is larger, e.g. with redials).
    """

    campaign_id: str
    name: str
    #: The instruction kind of the campaign's calls (notification, otp, dtmf...).
    kind: str
    #: enqueuing, running, paused, cancelled or finished.
    phase: str
    generated_at: datetime
    rows_read: int
    enqueued: int
    invalid: int
    duplicates: int
    #: Calls waiting to be dispatched.
    backlog: int
    #: Calls being dispatched or placed, whose outcome is not known yet.
    in_flight: int
    #: Calls that reached a final state other than EXPIRED.
    done: int
    #: Calls that ended EXPIRED: not placed before the campaign's deadline (not in ``done``).
    expired: int
    #: Ledger state (QUEUED, PLACED, FINISHED...) -> calls in it.
    states: dict[str, int]
    #: CM result code -> calls that ended with it (9 not answered, 10 finished, 11 failed,
    #: 12 rejected; others possible).
    result_codes: dict[int, int]
    #: Minute -> calls placed in it.
    placed_per_minute: list[tuple[datetime, int]]
    #: Minute -> result code -> calls that ended with it in that minute.
    outcomes_per_minute: list[tuple[datetime, dict[int, int]]]
    #: Rule text (from the campaign's file checks) -> rows rejected by it.
    errors_by_rule: dict[str, int]
    #: Seconds until the last call is expected to end; None when unknown.
    eta_s: float | None
    #: The campaign's rate limit (``5/s``), None when it has none of its own.
    rate: str | None
