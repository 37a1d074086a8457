"""The pacer's pure decisions: the budget of a step, a campaign's room, fair shares, open groups."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmvoice.campaigns.model import ANY_ZONE
from cmvoice.campaigns.plan import (
    Budget,
    campaign_room,
    open_groups,
    plan_budget,
    rate_refill_s,
    share_fairly,
)
from cmvoice.rules.windows import CallingPolicy
from cmvoice.rules.zones import zone_group

#: 2026-11-26T12:00:00Z in µs.
NOW_US = 1_795_694_400_000_000
MS = 1_000
#: 10 calls a second.
INTERVAL_US = 100 * MS
LEAD_US = 500 * MS

AMSTERDAM = zone_group(("Europe/Amsterdam",))
NEW_YORK = zone_group(("America/New_York",))
BOTH = zone_group(("Europe/Amsterdam", "America/New_York"))
TOKYO_AND_AMSTERDAM = zone_group(("Asia/Tokyo", "Europe/Amsterdam"))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- plan_budget ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ahead_us", "slots_in_use", "released", "budget"),
    [
        # idle: the whole lead is free, at 10/s that is 5 calls
        (0, 0, 0, Budget(rate_room=5, slot_room=50, rate_refill_s=0.0)),
        # the account's next turn lies in the past: the same as idle
        (-3_000 * MS, 0, 0, Budget(5, 50, 0.0)),
        # 200 ms of the rate taken already: 3 turns left in the lead
        (200 * MS, 0, 0, Budget(3, 50, 0.0)),
        # released and unclaimed calls each take a turn and a slot already
        (200 * MS, 0, 2, Budget(1, 48, 0.15)),
        (0, 10, 5, Budget(0, 35, 0.25)),
        # the rate is taken up to the lead: nothing, until half the lead is free again
        (500 * MS, 0, 0, Budget(0, 50, 0.25)),
        # beyond the lead (another process sent meanwhile): no room, a longer refill
        (700 * MS, 0, 0, Budget(-2, 50, 0.45)),
        # the slots bind, not the rate
        (0, 48, 1, Budget(4, 1, 0.0)),
        (0, 50, 0, Budget(5, 0, 0.0)),
        (0, 50, 3, Budget(2, -3, 0.05)),
    ],
)
def test_the_budget_is_what_both_the_rate_within_the_lead_and_the_free_slots_allow(
    ahead_us: int, slots_in_use: int, released: int, budget: Budget
) -> None:
    # Given the account's rate taken up to `ahead_us` from now, slots in use, calls released
    # When the step plans its budget, at 10 calls a second, 50 slots and a 500 ms lead
    planned = plan_budget(
        now_us=NOW_US,
        tat_us=NOW_US + ahead_us,
        interval_us=INTERVAL_US,
        lead_us=LEAD_US,
        slot_limit=50,
        slots_in_use=slots_in_use,
        released=released,
    )

    # Then
    assert planned == budget
    assert planned.calls == max(0, min(budget.rate_room, budget.slot_room))


@pytest.mark.parametrize(
    ("rate_room", "slot_room", "calls"), [(5, 50, 5), (5, 2, 2), (0, 9, 0), (-2, 9, 0), (3, -1, 0)]
)
def test_a_budget_releases_the_smaller_room_and_never_a_negative_number(
    rate_room: int, slot_room: int, calls: int
) -> None:
    assert Budget(rate_room, slot_room, 0.0).calls == calls


def test_an_account_with_no_turn_taken_ever_has_the_whole_lead() -> None:
    # Given an account whose rate timeline was never written (tat 0)
    # When / Then
    budget = plan_budget(
        now_us=NOW_US,
        tat_us=0,
        interval_us=INTERVAL_US,
        lead_us=LEAD_US,
        slot_limit=50,
        slots_in_use=0,
        released=0,
    )
    assert budget.calls == 5


@pytest.mark.parametrize(
    ("interval_us", "ahead_us", "released", "rate_room"),
    [
        # 1 call a second, with a 500 ms lead: the turn that is due now may go
        (1_000 * MS, 0, 0, 1),
        (1_000 * MS, -5_000 * MS, 0, 1),
        # the next turn starts within the lead: it may go, and waits in the worker
        (1_000 * MS, 300 * MS, 0, 1),
        # not yet within the lead, or already released
        (1_000 * MS, 500 * MS, 0, 0),
        (1_000 * MS, 0, 1, 0),
        # 1 call a minute
        (60_000 * MS, 0, 0, 1),
        (60_000 * MS, 30_000 * MS, 0, 0),
        # 10 a second, 150 ms taken: turns at 150, 250, 350 and 450 ms all start within it
        (INTERVAL_US, 150 * MS, 0, 4),
    ],
)
def test_an_account_rate_slower_than_one_call_per_lead_still_releases_each_turn(
    interval_us: int, ahead_us: int, released: int, rate_room: int
) -> None:
    # Given an account rate whose next turn is `ahead_us` from now
    # When the step plans its budget with a 500 ms lead
    budget = plan_budget(
        now_us=NOW_US,
        tat_us=NOW_US + ahead_us,
        interval_us=interval_us,
        lead_us=LEAD_US,
        slot_limit=50,
        slots_in_use=0,
        released=released,
    )

    # Then each turn that starts within the lead is room for one call: a slow rate is slow,
    # never stuck
    assert budget.rate_room == rate_room


def budget_with_a_campaign_share(*, slots_in_use: int, released: int) -> Budget:
    """An idle rate (5 turns within the lead), 50 slots, campaigns' share 45 with 44 held."""
    return plan_budget(
        now_us=NOW_US,
        tat_us=NOW_US,
        interval_us=INTERVAL_US,
        lead_us=LEAD_US,
        slot_limit=50,
        slots_in_use=slots_in_use,
        released=released,
        campaign_slot_limit=45,
        campaign_slots_in_use=44,
    )


def test_campaign_calls_keep_to_their_share_of_the_slots() -> None:
    # Given 50 slots of which campaigns may hold 45, 44 of them held by campaign calls, 47 in
    # all, an idle rate (5 turns within the lead) and nothing released
    budget = budget_with_a_campaign_share(slots_in_use=47, released=0)

    # When / Then: 3 calls may go, of which one campaign call (its share's last slot); the
    # slots kept free go to interactive calls, which come first
    assert budget.calls == 3
    assert budget.campaign_slot_room == 1
    assert budget.campaign_calls(interactive=0) == 1
    assert budget.campaign_calls(interactive=2) == 1
    assert budget.campaign_calls(interactive=3) == 0
    # The pacer waits for a slot once it released that campaign call, unless an interactive
    # call still waits (the rate, not the slots, holds it back then)
    assert budget.slot_bound(interactive=0, campaign=1, interactive_left=False, campaigns=True)
    assert not budget.slot_bound(interactive=0, campaign=1, interactive_left=True, campaigns=True)
    assert not budget.slot_bound(interactive=0, campaign=0, interactive_left=False, campaigns=True)

    # And released calls not yet claimed take from the share too
    released = budget_with_a_campaign_share(slots_in_use=40, released=2)
    assert released.calls == 3
    assert released.campaign_calls(interactive=0) == 0


@pytest.mark.parametrize(
    ("slot_room", "interactive", "campaign", "interactive_left", "campaigns", "bound"),
    [
        # this step's releases took the last free slots, and calls still wait
        (3, 1, 2, False, True, True),
        (3, 3, 0, True, False, True),
        # a slot is still free: the rate, not the slots, held the rest back
        (3, 1, 1, False, True, False),
        # nothing waits any more
        (0, 0, 0, False, False, False),
    ],
)
def test_the_pacer_waits_for_a_slot_when_this_steps_releases_took_the_last_ones(
    slot_room: int,
    interactive: int,
    campaign: int,
    interactive_left: bool,
    campaigns: bool,
    bound: bool,
) -> None:
    budget = Budget(rate_room=5, slot_room=slot_room, rate_refill_s=0.0)
    assert (
        budget.slot_bound(
            interactive=interactive,
            campaign=campaign,
            interactive_left=interactive_left,
            campaigns=campaigns,
        )
        is bound
    )


# --- campaign_room ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tat_us", "interval_us", "room"),
    [
        (0, INTERVAL_US, 5),
        (NOW_US - 60_000 * MS, INTERVAL_US, 5),
        (NOW_US, INTERVAL_US, 5),
        (NOW_US + 300 * MS, INTERVAL_US, 2),
        (NOW_US + 500 * MS, INTERVAL_US, 0),
        (NOW_US + 2_000 * MS, INTERVAL_US, 0),
        (NOW_US, 250 * MS, 2),
        (NOW_US, 1 * MS, 500),
    ],
)
def test_a_campaigns_room_is_its_own_rates_turns_within_the_lead(
    tat_us: int, interval_us: int, room: int
) -> None:
    # Given a campaign whose own rate is taken up to tat_us
    # When / Then: never negative, however far ahead its rate was taken
    assert (
        campaign_room(now_us=NOW_US, tat_us=tat_us, interval_us=interval_us, lead_us=LEAD_US)
        == room
    )


@pytest.mark.parametrize(
    ("tat_us", "interval_us", "room"),
    [
        # a campaign of 1 call every 2 seconds (README: --rate 1/2s) gets its turns
        (0, 2_000 * MS, 1),
        (NOW_US, 2_000 * MS, 1),
        (NOW_US + 400 * MS, 2_000 * MS, 1),
        (NOW_US + 1_500 * MS, 2_000 * MS, 0),
        # 60 a minute
        (NOW_US, 1_000 * MS, 1),
        # a turn that starts inside the lead counts
        (NOW_US + 50 * MS, 200 * MS, 3),
    ],
)
def test_a_campaign_slower_than_one_call_per_lead_gets_room_when_its_turn_comes(
    tat_us: int, interval_us: int, room: int
) -> None:
    assert (
        campaign_room(now_us=NOW_US, tat_us=tat_us, interval_us=interval_us, lead_us=LEAD_US)
        == room
    )


@given(
    ahead_us=st.integers(min_value=-10_000_000, max_value=10_000_000),
    interval_us=st.integers(min_value=1, max_value=120_000_000),
    lead_us=st.integers(min_value=1, max_value=5_000_000),
)
def test_a_campaigns_room_is_exactly_the_turns_that_start_within_the_lead(
    ahead_us: int, interval_us: int, lead_us: int
) -> None:
    # Given any rate, lead and position of the campaign's next turn
    # When
    room = campaign_room(
        now_us=NOW_US, tat_us=NOW_US + ahead_us, interval_us=interval_us, lead_us=lead_us
    )

    # Then every turn given starts before the lead ends, and the next one does not
    first = max(ahead_us, 0)
    if room:
        assert first + (room - 1) * interval_us < lead_us
    assert first + room * interval_us >= lead_us


@pytest.mark.parametrize(
    ("tat_us", "interval_us", "released", "refill_s"),
    [
        # 5/s, idle, three calls just released: 600 ms of its rate taken, room again once
        # half the lead (250 ms) is free
        (0, 200 * MS, 3, 0.35),
        (NOW_US - 1_000 * MS, 200 * MS, 3, 0.35),
        # released nothing this step, its rate taken 400 ms ahead
        (NOW_US + 400 * MS, 200 * MS, 0, 0.15),
        # its turns continue from its tat when that lies ahead
        (NOW_US + 100 * MS, 200 * MS, 1, 0.05),
        # half the lead or less taken: room now
        (NOW_US + 250 * MS, 200 * MS, 0, 0.0),
        (0, 200 * MS, 0, 0.0),
        # 1/2s: the next turn comes near in 1.75 s
        (0, 2_000 * MS, 1, 1.75),
    ],
)
def test_a_campaign_whose_own_rate_binds_is_looked_at_again_when_it_has_room(
    tat_us: int, interval_us: int, released: int, refill_s: float
) -> None:
    # Given a campaign whose own rate is taken up to tat_us, and `released` calls released
    # by this step
    # When / Then: the pacer looks again once half the lead is free of its turns
    assert rate_refill_s(
        now_us=NOW_US, tat_us=tat_us, interval_us=interval_us, lead_us=LEAD_US, released=released
    ) == pytest.approx(refill_s)


# --- share_fairly -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "capacities", "start", "shares"),
    [
        # one each in turn, from the start
        (5, [3, 3, 3], 0, [2, 2, 1]),
        (5, [3, 3, 3], 1, [1, 2, 2]),
        (5, [3, 3, 3], 2, [2, 1, 2]),
        (1, [3, 3, 3], 2, [0, 0, 1]),
        # a start past the end wraps round
        (1, [3, 3, 3], 4, [0, 1, 0]),
        # never above a capacity: leftovers go to the others
        (6, [1, 5, 1], 0, [1, 4, 1]),
        (6, [0, 9, 0], 0, [0, 6, 0]),
        (4, [2, 0, 2], 1, [2, 0, 2]),
        # a budget larger than all capacities gives each its capacity
        (100, [1, 2, 0], 0, [1, 2, 0]),
        # nothing to give, or no one to give it to
        (0, [3, 3], 0, [0, 0]),
        (5, [0, 0], 1, [0, 0]),
        (5, [], 0, []),
    ],
)
def test_a_budget_is_shared_round_robin_from_the_start_within_each_capacity(
    budget: int, capacities: list[int], start: int, shares: list[int]
) -> None:
    # Given campaigns with calls due now (capacities)
    # When the step's budget is shared from campaign `start`
    # Then
    assert share_fairly(budget, capacities, start) == shares


@given(
    budget=st.integers(min_value=0, max_value=60),
    capacities=st.lists(st.integers(min_value=0, max_value=20), max_size=8),
    start=st.integers(min_value=0, max_value=20),
)
def test_every_share_is_within_capacity_and_no_campaign_that_could_take_more_trails_by_two(
    budget: int, capacities: list[int], start: int
) -> None:
    # Given any budget, capacities and start
    # When
    shares = share_fairly(budget, capacities, start)

    # Then the budget is used up to what the campaigns can take, none above its capacity
    assert sum(shares) == min(budget, sum(capacities))
    assert all(0 <= share <= cap for share, cap in zip(shares, capacities, strict=True))
    # And a campaign short of its capacity has at most one call fewer than any other
    for index, share in enumerate(shares):
        if share < capacities[index]:
            assert all(other <= share + 1 for other in shares)


# --- open_groups ------------------------------------------------------------------------------


def test_the_any_group_is_open_even_when_every_window_is_closed() -> None:
    # Given a window that is closed everywhere at 03:00 UTC on a Wednesday
    policy = CallingPolicy.parse("10:00-11:00", "mon-sun")

    # When
    opened, next_opening = open_groups(policy, [ANY_ZONE], utc("2026-06-10T03:00:00"))

    # Then the calls of no particular zone go, and nothing is waited for
    assert opened == [ANY_ZONE]
    assert next_opening is None


def test_an_always_open_policy_opens_every_group_without_judging_zones() -> None:
    # Given a policy of every hour of every day, and a group of a zone zoneinfo does not know
    policy = CallingPolicy.parse("00:00-24:00", "mon-sun")
    groups = [AMSTERDAM, BOTH, "Mars/Olympus_Mons"]

    # When
    opened, next_opening = open_groups(policy, groups, utc("2026-06-10T03:00:00"))

    # Then
    assert opened == groups
    assert next_opening is None


@pytest.mark.parametrize(
    ("now", "opened", "next_opening"),
    [
        # 12:00 in Amsterdam, 06:00 in New York: New York opens at 08:00 EDT = 12:00Z
        ("2026-06-10T10:00:00", [ANY_ZONE, AMSTERDAM], "2026-06-10T12:00:00"),
        # 14:00 and 08:00: all open
        ("2026-06-10T12:00:00", [ANY_ZONE, AMSTERDAM, NEW_YORK, BOTH], None),
        # 21:00 CEST: Amsterdam just closed; New York (15:00) is open
        ("2026-06-10T19:00:00", [ANY_ZONE, NEW_YORK], "2026-06-11T06:00:00"),
        # 03:00 and 21:00 the day before: all closed, Amsterdam opens first (08:00 CEST)
        ("2026-06-11T01:00:00", [ANY_ZONE], "2026-06-11T06:00:00"),
        # in winter Amsterdam is UTC+1: 08:00 CET is 07:00Z
        ("2026-01-14T05:00:00", [ANY_ZONE], "2026-01-14T07:00:00"),
    ],
)
def test_groups_open_in_all_their_zones_go_and_the_earliest_opening_of_the_rest_is_given(
    now: str, opened: list[str], next_opening: str | None
) -> None:
    # Given the default window 08:00-21:00 every day, and groups of one zone and of two
    policy = CallingPolicy.parse()
    groups = [ANY_ZONE, AMSTERDAM, NEW_YORK, BOTH]

    # When
    found, opens = open_groups(policy, groups, utc(now))

    # Then
    assert found == opened
    assert opens == (utc(next_opening) if next_opening else None)


def test_a_closed_day_waits_for_the_next_calling_day() -> None:
    # Given working days only, on a Saturday at noon
    policy = CallingPolicy.parse("09:00-17:00", "mon-fri")

    # When
    opened, next_opening = open_groups(policy, [AMSTERDAM], utc("2026-06-13T12:00:00"))

    # Then nothing goes before Monday 09:00 in Amsterdam (07:00Z in summer)
    assert opened == []
    assert next_opening == utc("2026-06-15T07:00:00")


def test_a_group_whose_zones_never_overlap_gives_no_opening_and_does_not_hide_others() -> None:
    # Given a one-hour window that Tokyo and Amsterdam never share, and New York closed
    policy = CallingPolicy.parse("08:00-09:00")
    now = utc("2026-06-10T03:00:00")

    # When
    opened, next_opening = open_groups(policy, [TOKYO_AND_AMSTERDAM, NEW_YORK], now)

    # Then the shared group never opens, and New York's opening (08:00 EDT) is the next one
    assert opened == []
    assert next_opening == utc("2026-06-10T12:00:00")
    assert open_groups(policy, [TOKYO_AND_AMSTERDAM], now) == ([], None)
