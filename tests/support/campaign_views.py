"""Campaign page views for tests: a realistic finished campaign and one with no calls yet."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from cmvoice.reporting.view import CampaignPageView

#: When the test campaigns started.
STARTED_AT = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
#: Result codes and how often each ends a call: most answered, some not, a few failed/rejected.
CODE_WEIGHTS = {10: 70, 9: 18, 11: 7, 12: 5}
#: Why the finished campaign's invalid rows were not called.
ERROR_RULES = {
    "callee: not a valid phone number for its country": 14,
    "language: must be one of nl-NL, en-GB, de-DE": 4,
}


def finished_campaign_view(
    *, calls: int = 400, minutes: int = 20, name: str = "Spring reminders", seed: int = 7
) -> CampaignPageView:
    """A campaign whose ``calls`` were placed over ``minutes`` and all ended, 0-2 minutes later.

    Codes 9 and 10 leave a call FINISHED, 11 and 12 FAILED, as the ledger records them.
    """
    rng = random.Random(seed)
    placed: dict[datetime, int] = {}
    ended: dict[datetime, dict[int, int]] = {}
    codes: dict[int, int] = {}
    for index in range(calls):
        minute = STARTED_AT + timedelta(minutes=index * minutes // calls)
        placed[minute] = placed.get(minute, 0) + 1
        code = rng.choices(list(CODE_WEIGHTS), weights=list(CODE_WEIGHTS.values()))[0]
        end = minute + timedelta(minutes=rng.choice((0, 1, 1, 2)))
        ended.setdefault(end, {})
        ended[end][code] = ended[end].get(code, 0) + 1
        codes[code] = codes.get(code, 0) + 1
    invalid = sum(ERROR_RULES.values())
    duplicates = 12
    return CampaignPageView(
        campaign_id="20260504-5eed0a7e",
        name=name,
        kind="notification",
        phase="finished",
        generated_at=STARTED_AT + timedelta(minutes=minutes + 5),
        rows_read=calls + invalid + duplicates,
        enqueued=calls,
        invalid=invalid,
        duplicates=duplicates,
        backlog=0,
        in_flight=0,
        done=calls,
        expired=0,
        states={
            "FINISHED": codes.get(9, 0) + codes.get(10, 0),
            "FAILED": codes.get(11, 0) + codes.get(12, 0),
        },
        result_codes=codes,
        placed_per_minute=sorted(placed.items()),
        outcomes_per_minute=sorted(ended.items()),
        errors_by_rule=dict(ERROR_RULES),
        eta_s=0.0,
        rate="20/s",
    )


def empty_campaign_view() -> CampaignPageView:
    """A campaign that is still reading its file: nothing enqueued, nothing called."""
    return CampaignPageView(
        campaign_id="20260504-00000000",
        name="Not started",
        kind="otp",
        phase="enqueuing",
        generated_at=STARTED_AT,
        rows_read=0,
        enqueued=0,
        invalid=0,
        duplicates=0,
        backlog=0,
        in_flight=0,
        done=0,
        expired=0,
        states={},
        result_codes={},
        placed_per_minute=[],
        outcomes_per_minute=[],
        errors_by_rule={},
        eta_s=None,
        rate=None,
    )
