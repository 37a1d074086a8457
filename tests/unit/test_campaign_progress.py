"""CampaignProgress and estimate_eta_s: where a campaign stands and how long it still takes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from rich.console import Console

from cmvoice.campaigns.model import (
    Backlog,
    Campaign,
    CampaignProgress,
    CampaignStatus,
    EnqueueState,
    estimate_eta_s,
)
from cmvoice.cli.rendering import campaign_status_table
from cmvoice.config import parse_rate
from cmvoice.ledger import CallState

#: 2026-11-26T12:00:00Z, in ms.
NOW_MS = 1_795_694_400_000

CAMPAIGN = Campaign(
    campaign_id="20261126-1f2e3d4c",
    name="reminders",
    kind="notification",
    file="calls.csv",
    file_format="csv",
    fingerprint="sha256:abc",
    size_bytes=1234,
    template={},
    errors_path="calls.errors.csv",
    created_at_ms=NOW_MS - 60_000,
    status=CampaignStatus.RUNNING,
    enqueue_state=EnqueueState.COMPLETE,
    rows_read=12,
    enqueued=10,
    invalid=1,
    duplicates=1,
)


def progress(
    counts: dict[CallState, int],
    *,
    backlog: Backlog | None = None,
    calls_per_minute: float = 0.0,
    **campaign: Any,
) -> CampaignProgress:
    return CampaignProgress(
        campaign=replace(CAMPAIGN, **campaign),
        counts=counts,
        codes={"10": 3, "9": 1},
        backlog=backlog or Backlog(),
        refused_by_rule={"suppressed": 2},
        calls_per_minute=calls_per_minute,
        now_ms=NOW_MS,
    )


#: Ten enqueued rows plus two redials: five still going, seven over.
MIXED = {
    CallState.QUEUED: 3,
    CallState.DISPATCHING: 1,
    CallState.PLACED: 1,
    CallState.UNKNOWN: 0,
    CallState.FINISHED: 4,
    CallState.FAILED: 1,
    CallState.CANCELLED: 1,
    CallState.EXPIRED: 1,
}


def test_attempts_count_every_record_and_redials_those_beyond_the_enqueued_rows() -> None:
    # Given ten enqueued rows with twelve call records
    # When
    state = progress(MIXED)

    # Then
    assert state.attempts == 12
    assert state.redials == 2


def test_redials_are_never_negative_while_rows_are_still_being_created() -> None:
    # Given a campaign whose counter says more rows were enqueued than records exist yet
    # When / Then
    assert progress({CallState.QUEUED: 4}, enqueued=10).redials == 0


@pytest.mark.parametrize(
    ("counts", "active", "done"),
    [
        ({}, 0, 0),
        (MIXED, 5, 7),
        ({CallState.UNKNOWN: 2, CallState.PLACED: 1}, 3, 0),
        ({CallState.FINISHED: 3, CallState.EXPIRED: 2}, 0, 5),
    ],
)
def test_active_counts_calls_still_going_and_done_those_that_ended(
    counts: dict[CallState, int], active: int, done: int
) -> None:
    # Given calls in these states
    # When
    state = progress(counts)

    # Then QUEUED, DISPATCHING, PLACED and UNKNOWN are active; the terminal states are done
    assert (state.active, state.done) == (active, done)


@pytest.mark.parametrize(
    ("backlog", "in_flight"),
    [
        (Backlog(), 5),
        (Backlog(due_now=2, due_later=1), 2),
        (Backlog(due_now=5), 0),
        (Backlog(due_now=4, due_later=4), 0),
    ],
)
def test_in_flight_calls_are_the_active_ones_that_left_the_backlog(
    backlog: Backlog, in_flight: int
) -> None:
    # Given five active calls and a backlog of some of them (or a stale, larger one)
    # When / Then
    assert progress(MIXED, backlog=backlog).in_flight == in_flight


@pytest.mark.parametrize(
    ("backlog", "total"), [(Backlog(), 0), (Backlog(due_now=3), 3), (Backlog(2, 5, NOW_MS), 7)]
)
def test_the_backlog_total_is_due_now_plus_due_later(backlog: Backlog, total: int) -> None:
    assert backlog.total == total


#: Every status x enqueue state x (calls active or not), and the phase it shows.
PHASES = [
    (CampaignStatus.CANCELLED, EnqueueState.ENQUEUING, True, "cancelled"),
    (CampaignStatus.CANCELLED, EnqueueState.ENQUEUING, False, "cancelled"),
    (CampaignStatus.CANCELLED, EnqueueState.INTERRUPTED, True, "cancelled"),
    (CampaignStatus.CANCELLED, EnqueueState.INTERRUPTED, False, "cancelled"),
    (CampaignStatus.CANCELLED, EnqueueState.COMPLETE, True, "cancelled"),
    (CampaignStatus.CANCELLED, EnqueueState.COMPLETE, False, "cancelled"),
    (CampaignStatus.PAUSED, EnqueueState.ENQUEUING, True, "enqueuing"),
    (CampaignStatus.PAUSED, EnqueueState.ENQUEUING, False, "enqueuing"),
    (CampaignStatus.PAUSED, EnqueueState.INTERRUPTED, True, "interrupted"),
    (CampaignStatus.PAUSED, EnqueueState.INTERRUPTED, False, "interrupted"),
    (CampaignStatus.PAUSED, EnqueueState.COMPLETE, True, "paused"),
    (CampaignStatus.PAUSED, EnqueueState.COMPLETE, False, "paused"),
    (CampaignStatus.RUNNING, EnqueueState.ENQUEUING, True, "enqueuing"),
    (CampaignStatus.RUNNING, EnqueueState.ENQUEUING, False, "enqueuing"),
    (CampaignStatus.RUNNING, EnqueueState.INTERRUPTED, True, "interrupted"),
    (CampaignStatus.RUNNING, EnqueueState.INTERRUPTED, False, "interrupted"),
    (CampaignStatus.RUNNING, EnqueueState.COMPLETE, True, "running"),
    (CampaignStatus.RUNNING, EnqueueState.COMPLETE, False, "finished"),
]


def test_the_phase_table_covers_every_combination() -> None:
    combinations = {(status, state, active) for status, state, active, _ in PHASES}
    assert len(combinations) == len(CampaignStatus) * len(EnqueueState) * 2


@pytest.mark.parametrize(("status", "enqueue_state", "active", "phase"), PHASES)
def test_the_phase_follows_cancel_then_enqueueing_then_pause_then_active_calls(
    status: CampaignStatus, enqueue_state: EnqueueState, active: bool, phase: str
) -> None:
    # Given a campaign in this status and enqueue state, with or without calls going
    counts = {CallState.QUEUED: 2, CallState.FINISHED: 1} if active else {CallState.FINISHED: 3}

    # When
    state = progress(counts, status=status, enqueue_state=enqueue_state)

    # Then
    assert state.phase == phase


@pytest.mark.parametrize("enqueue_state", list(EnqueueState))
@pytest.mark.parametrize("status", [CampaignStatus.PAUSED, CampaignStatus.CANCELLED])
def test_a_paused_or_cancelled_campaign_has_no_time_left_to_show(
    status: CampaignStatus, enqueue_state: EnqueueState
) -> None:
    # Given a stopped campaign that still has active calls, a measured speed and its own rate,
    # whether its file is still being read, was interrupted, or is complete
    state = progress(
        MIXED, status=status, enqueue_state=enqueue_state, calls_per_minute=60.0, rate="1/s"
    )

    # When / Then
    assert state.eta_s is None
    assert state.to_dict()["eta_s"] is None


def test_a_running_campaign_estimates_from_its_own_rate_until_a_speed_is_measured() -> None:
    # Given five active calls at the campaign's rate of 1/s, and no speed measured yet
    # When / Then
    assert progress(MIXED, rate="1/s").eta_s == 5.0
    # And once a speed of 30 calls a minute is measured, that wins
    assert progress(MIXED, rate="1/s", calls_per_minute=30.0).eta_s == 10.0


def test_a_campaign_at_a_million_calls_an_hour_still_shows_its_time_left() -> None:
    # Given a campaign whose rate was stored as the store writes it
    stored = str(parse_rate("1000000/h"))

    # When its time left is estimated from that rate
    eta_s = progress(MIXED, rate=stored).eta_s

    # Then it is the five active calls at 1,000,000 an hour
    assert eta_s == pytest.approx(5 / (1_000_000 / 3600))


def test_to_dict_gives_numbers_as_numbers_and_states_by_name() -> None:
    # Given a running campaign with a measured speed and a backlog due later
    state = progress(
        MIXED,
        backlog=Backlog(due_now=2, due_later=1, last_due_ms=NOW_MS + 600_000),
        calls_per_minute=12.345,
        rate="10/m",
        until_ms=NOW_MS + 3_600_000,
    )

    # When
    data = state.to_dict()

    # Then every count is an int, the speed a rounded float, the time left whole seconds
    for name in (
        "rows_read",
        "enqueued",
        "invalid",
        "duplicates",
        "refused",
        "expired",
        "attempts",
        "redials",
        "active",
        "backlog",
        "backlog_due_later",
        "in_flight",
        "done",
        "eta_s",
    ):
        assert type(data[name]) is int, name
    assert data["calls_per_minute"] == 12.3
    assert data["eta_s"] == 600
    assert (data["attempts"], data["redials"], data["active"], data["done"]) == (12, 2, 5, 7)
    assert (data["backlog"], data["backlog_due_later"], data["in_flight"]) == (3, 1, 2)
    assert data["expired"] == 1
    assert data["states"] == {state.value: count for state, count in MIXED.items()}
    assert data["result_codes"] == {"10": 3, "9": 1}
    assert data["refused_by_rule"] == {"suppressed": 2}
    assert (data["phase"], data["status"], data["enqueue_state"]) == (
        "running",
        "running",
        "complete",
    )
    assert data["until"] == "2026-11-26T13:00:00+00:00"
    assert data["updated_at"] == "2026-11-26T12:00:00+00:00"


def test_to_dict_leaves_an_unset_deadline_and_rate_empty() -> None:
    # Given a campaign with no deadline and no rate of its own
    # When
    data = progress({}).to_dict()

    # Then
    assert data["until"] is None
    assert data["rate"] is None
    assert data["eta_s"] == 0
    assert data["phase"] == "finished"


# --- estimate_eta_s ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining", "backlog", "calls_per_minute", "rate_per_s", "eta_s"),
    [
        # nothing tells the speed
        (5, Backlog(), 0.0, None, None),
        (5, Backlog(), 0.0, 0.0, None),
        # the campaign's rate when nothing was measured
        (5, Backlog(), 0.0, 0.5, 10.0),
        # the measured speed wins over the rate
        (5, Backlog(), 30.0, 5.0, 10.0),
        (6, Backlog(), 120.0, None, 3.0),
        # never shorter than the wait for the latest call due later
        (5, Backlog(due_later=1, last_due_ms=NOW_MS + 300_000), 60.0, None, 300.0),
        (5, Backlog(due_later=1, last_due_ms=NOW_MS + 2_000), 60.0, None, 5.0),
        # a due-later call already overdue does not shorten the estimate
        (5, Backlog(due_later=1, last_due_ms=NOW_MS - 60_000), 60.0, None, 5.0),
        # a latest due time with nothing due later is ignored
        (5, Backlog(due_now=5, last_due_ms=NOW_MS + 300_000), 60.0, None, 5.0),
        # nothing remains: done, whatever the speed
        (0, Backlog(), 0.0, None, 0.0),
        (0, Backlog(due_later=1, last_due_ms=NOW_MS + 300_000), 60.0, None, 0.0),
    ],
)
def test_the_eta_is_remaining_calls_at_the_best_known_speed_but_no_sooner_than_due(
    remaining: int,
    backlog: Backlog,
    calls_per_minute: float,
    rate_per_s: float | None,
    eta_s: float | None,
) -> None:
    # Given / When
    estimate = estimate_eta_s(
        remaining=remaining,
        backlog=backlog,
        now_ms=NOW_MS,
        calls_per_minute=calls_per_minute,
        rate_per_s=rate_per_s,
    )

    # Then
    assert estimate == eta_s


def rendered(data: dict[str, Any]) -> list[str]:
    """The lines ``campaign status`` prints for ``data``, as plain text, spaces collapsed."""
    console = Console(record=True, width=120, color_system=None)
    console.print(campaign_status_table(data))
    return [" ".join(line.split()) for line in console.export_text().splitlines()]


def test_the_status_table_says_when_it_was_last_refreshed() -> None:
    # Given the same running campaign looked at twice, a minute apart (as --watch does)
    first = progress(MIXED).to_dict()
    later = replace(progress(MIXED), now_ms=NOW_MS + 60_000).to_dict()

    # When each is rendered
    # Then each says, on its own line, the time it was read
    assert "updated at 2026-11-26T12:00:00+00:00" in rendered(first)
    assert "updated at 2026-11-26T12:01:00+00:00" in rendered(later)
