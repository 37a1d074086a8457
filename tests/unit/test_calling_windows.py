"""Calling windows in the callee's local time: syntax, days, midnight, DST, several zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import combinations
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers.tzdata import TIMEZONE_DATA

from cmvoice.rules.windows import (
    HORIZON_S,
    CallingPolicy,
    CallingWindow,
    describe_wait,
    format_days,
    parse_days,
    parse_window,
)
from cmvoice.rules.zones import zone_group, zones_for_number

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
NEW_YORK = ZoneInfo("America/New_York")
NL = ("Europe/Amsterdam",)
NY = ("America/New_York",)
#: A Manhattan fixed line: phonenumbers knows its one zone.
MANHATTAN_NUMBER = "+12124567890"
#: An Idaho area-code block that phonenumbers puts in two zones.
IDAHO_NUMBER = "+12083201234"
#: A toll-free number: no area, so every zone of +1, from Guam to Newfoundland.
TOLL_FREE_NUMBER = "+18002345678"
ONE_SECOND = timedelta(seconds=1)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, zone: ZoneInfo = AMSTERDAM, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold)


# --- syntax ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical", "crosses_midnight"),
    [
        ("08:00-21:00", "08:00-21:00", False),
        ("22:00-02:00", "22:00-02:00", True),
        ("00:00-24:00", "00:00-24:00", False),
        ("22:00-00:00", "22:00-24:00", False),
        (" 8:30 - 17:45 ", "08:30-17:45", False),
    ],
)
def test_a_window_is_read_and_written_back_in_canonical_form(
    text: str, canonical: str, crosses_midnight: bool
) -> None:
    window = parse_window(text)
    assert str(window) == canonical
    assert window.crosses_midnight is crosses_midnight
    assert parse_window(str(window)) == window


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("09:00-09:00", "empty"),
        ("00:00-00:00", "empty"),
        ("25:00-26:00", "hours run 00..23"),
        ("08:60-09:00", "minutes 00..59"),
        ("24:00-08:00", "24:00 only as the end"),
        ("08:00-24:30", "24:00 only as the end"),
        ("garbage", "HH:MM-HH:MM"),
        ("", "HH:MM-HH:MM"),
        ("08:00", "HH:MM-HH:MM"),
        ("0800-2100", "HH:MM-HH:MM"),
        ("08:00-21:00-22:00", "HH:MM-HH:MM"),
        ("\u0660\u0668:\u0660\u0660-\u0662\u0661:\u0660\u0660", "HH:MM-HH:MM"),
    ],
)
def test_a_bad_window_is_refused_naming_the_rule_and_quoting_the_value(
    text: str, reason: str
) -> None:
    with pytest.raises(ValueError, match="calling window") as refused:
        parse_window(text)
    assert repr(text) in str(refused.value)
    assert reason in str(refused.value)


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("mon-sun", {0, 1, 2, 3, 4, 5, 6}),
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("mon,wed,fri", {0, 2, 4}),
        ("sat-sun", {5, 6}),
        ("fri-mon", {4, 5, 6, 0}),
        ("tue-mon", {0, 1, 2, 3, 4, 5, 6}),
        (" Mon - Wed , FRI ", {0, 1, 2, 4}),
        ("sun", {6}),
    ],
)
def test_days_are_read_as_names_ranges_that_may_wrap_and_lists(text: str, days: set[int]) -> None:
    assert parse_days(text) == days


@pytest.mark.parametrize("text", ["", "xyz", "mon-xyz", "monday", "mon,,fri", "mon-mon", "1-5"])
def test_bad_days_are_refused_naming_the_rule_and_quoting_the_value(text: str) -> None:
    with pytest.raises(ValueError, match="calling days") as refused:
        parse_days(text)
    assert repr(text) in str(refused.value)


def test_every_day_set_is_written_canonically_and_read_back_the_same() -> None:
    # Given every non-empty set of weekdays
    for size in range(1, 8):
        for chosen in combinations(range(7), size):
            days = frozenset(chosen)
            # When written and read again, Then it is the same set
            assert parse_days(format_days(days)) == days
    assert format_days(parse_days("sat,sun,mon,fri")) == "fri-mon"
    assert format_days(parse_days("mon,tue,wed,fri")) == "mon-wed,fri"


def test_a_policy_prints_its_canonical_text_and_defaults_to_8_to_21_every_day() -> None:
    assert str(CallingPolicy()) == "08:00-21:00 mon-sun"
    assert CallingPolicy() == CallingPolicy.parse()
    assert str(CallingPolicy.parse("22:00-02:00", "sat,fri,sun")) == "22:00-02:00 fri-sun"


def test_a_window_built_by_hand_is_checked_too() -> None:
    with pytest.raises(ValueError, match="empty"):
        CallingWindow(600, 600)
    with pytest.raises(ValueError, match="non-empty"):
        CallingPolicy(parse_window("08:00-21:00"), frozenset())


# --- open and closed at concrete instants ----------------------------------------------------


def test_the_default_window_opens_at_8_and_closes_at_21_local_with_the_end_exclusive() -> None:
    policy = CallingPolicy()
    # Given New York in December (UTC-5)
    assert not policy.is_open(NY, utc("2026-12-04 12:59:59"))
    assert policy.is_open(NY, utc("2026-12-04 13:00:00"))
    assert policy.is_open(NY, utc("2026-12-05 01:59:59"))
    assert not policy.is_open(NY, utc("2026-12-05 02:00:00"))
    assert policy.next_open(NY, utc("2026-12-04 03:00")) == utc("2026-12-04 13:00")
    assert policy.closes_at(NY, utc("2026-12-04 15:00")) == utc("2026-12-05 02:00")


def test_a_window_crossing_midnight_belongs_to_the_day_it_starts_on() -> None:
    # Given 22:00-02:00 on working days, in Amsterdam; 2026-12-04 is a Friday
    policy = CallingPolicy.parse("22:00-02:00", "mon-fri")
    # Then Friday night is open until Saturday 02:00, Saturday night is not
    assert policy.is_open(NL, local("2026-12-04 23:30"))
    assert policy.is_open(NL, local("2026-12-05 01:30"))
    assert not policy.is_open(NL, local("2026-12-05 23:30"))
    # And Monday 01:30 belongs to Sunday's window, which is closed
    assert not policy.is_open(NL, local("2026-12-07 01:30"))
    assert policy.closes_at(NL, local("2026-12-04 23:30")) == local("2026-12-05 02:00")
    assert policy.next_open(NL, local("2026-12-05 23:30")) == local("2026-12-07 22:00")


def test_a_window_on_consecutive_days_forms_one_open_period_across_midnight() -> None:
    policy = CallingPolicy.parse("00:00-24:00", "fri-sat")
    assert policy.closes_at(NL, local("2026-12-04 09:00")) == local("2026-12-06 00:00")
    # And a window open all the time never closes within the horizon
    assert CallingPolicy.parse("00:00-24:00").closes_at(NL, local("2026-12-04 09:00")) is None


def test_a_closed_instant_closes_at_itself_and_an_open_one_opens_at_itself() -> None:
    policy = CallingPolicy()
    closed, opened = utc("2026-12-04 03:00:00.250000"), utc("2026-12-04 15:00:00.250000")
    assert policy.closes_at(NY, closed) == closed
    assert policy.next_open(NY, opened) == opened


def test_an_instant_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        CallingPolicy().is_open(NY, datetime(2026, 12, 4, 12))


# --- daylight saving time --------------------------------------------------------------------


def test_on_the_spring_forward_day_in_amsterdam_a_window_in_the_skipped_hour_is_absent() -> None:
    # Given 02:00-03:00 daily; on 2026-03-29 the clock jumps from 02:00 CET to 03:00 CEST (01:00Z)
    policy = CallingPolicy.parse("02:00-03:00")
    assert not policy.is_open(NL, utc("2026-03-29 00:59:59"))
    assert not policy.is_open(NL, utc("2026-03-29 01:00:00"))
    # Then the next window after Saturday's is Monday's, at 02:00 CEST
    assert policy.next_open(NL, utc("2026-03-28 12:00")) == utc("2026-03-30 00:00")


def test_on_the_spring_forward_day_a_window_starting_in_the_skipped_hour_opens_at_the_jump() -> (
    None
):
    policy = CallingPolicy.parse("02:30-04:00")
    assert not policy.is_open(NL, utc("2026-03-29 00:59:59"))
    assert policy.is_open(NL, utc("2026-03-29 01:00:00"))
    assert policy.next_open(NL, utc("2026-03-28 23:00")) == utc("2026-03-29 01:00")
    assert policy.closes_at(NL, utc("2026-03-29 01:00")) == local("2026-03-29 04:00")


def test_the_default_window_follows_summer_time_in_amsterdam_and_new_york() -> None:
    policy = CallingPolicy()
    # Amsterdam: 08:00 CET on Saturday is 07:00Z, 08:00 CEST on Sunday is 06:00Z
    assert policy.next_open(NL, utc("2026-03-28 03:00")) == utc("2026-03-28 07:00")
    assert policy.next_open(NL, utc("2026-03-29 03:00")) == utc("2026-03-29 06:00")
    # New York jumps on 2026-03-08: 08:00 EST is 13:00Z, 08:00 EDT is 12:00Z
    assert policy.next_open(NY, utc("2026-03-07 03:00")) == utc("2026-03-07 13:00")
    assert policy.next_open(NY, utc("2026-03-08 03:00")) == utc("2026-03-08 12:00")
    assert policy.closes_at(NY, utc("2026-03-08 12:00")) == utc("2026-03-09 01:00")


def test_on_the_fall_back_day_in_new_york_a_window_in_the_repeated_hour_is_open_twice() -> None:
    # Given 01:00-02:00; on 2026-11-01 the clock goes from 02:00 EDT back to 01:00 EST (06:00Z)
    policy = CallingPolicy.parse("01:00-02:00")
    first_pass = local("2026-11-01 01:00", NEW_YORK)
    second_pass = local("2026-11-01 01:00", NEW_YORK, fold=1)
    # (compared in UTC: Python never finds a repeated local time equal to another zone's time)
    assert first_pass.astimezone(UTC) == utc("2026-11-01 05:00")
    assert second_pass.astimezone(UTC) == utc("2026-11-01 06:00")
    assert not policy.is_open(NY, utc("2026-11-01 04:59:59"))
    assert policy.is_open(NY, utc("2026-11-01 05:00"))
    assert policy.is_open(NY, second_pass)
    assert policy.is_open(NY, utc("2026-11-01 06:59:59"))
    assert not policy.is_open(NY, utc("2026-11-01 07:00"))
    # Then both passes form one period of two real hours
    assert policy.closes_at(NY, first_pass) == utc("2026-11-01 07:00")


def test_on_the_fall_back_day_a_window_ending_in_the_repeated_hour_opens_again() -> None:
    # Given Saturday night 22:00-01:30 in New York, into the fall-back night
    policy = CallingPolicy.parse("22:00-01:30")
    # Then it closes at the first 01:30 (EDT), opens again at 01:00 EST, closes at 01:30 EST
    assert policy.closes_at(NY, utc("2026-11-01 03:00")) == utc("2026-11-01 05:30")
    assert policy.next_open(NY, utc("2026-11-01 05:30")) == utc("2026-11-01 06:00")
    assert policy.closes_at(NY, utc("2026-11-01 06:00")) == utc("2026-11-01 06:30")


def test_on_the_fall_back_day_in_amsterdam_the_repeated_hour_is_inside_the_window() -> None:
    # 2026-10-25: 03:00 CEST back to 02:00 CET at 01:00Z, so 02:00-03:00 happens twice
    policy = CallingPolicy.parse("02:00-03:00")
    assert policy.next_open(NL, utc("2026-10-24 12:00")) == utc("2026-10-25 00:00")
    assert policy.closes_at(NL, utc("2026-10-25 00:00")) == utc("2026-10-25 02:00")


@pytest.mark.parametrize("zone", [AMSTERDAM, NEW_YORK])
@pytest.mark.parametrize("day", ["2026-03-29", "2026-10-25", "2026-03-08", "2026-11-01"])
@pytest.mark.parametrize("window", ["01:00-02:00", "02:30-04:00", "22:00-01:30", "01:59-02:01"])
def test_open_periods_match_a_minute_by_minute_scan_across_dst_days(
    zone: ZoneInfo, day: str, window: str
) -> None:
    # Given a window that touches the hours DST moves, around a day on which a zone changes
    policy, zones = CallingPolicy.parse(window, "mon-sun"), (str(zone),)
    start = utc(day + " 00:00") - timedelta(days=1)
    # When the open periods are walked with next_open and closes_at
    periods: list[tuple[datetime, datetime]] = []
    cursor = start
    while (opens := policy.next_open(zones, cursor)) is not None and opens < start + timedelta(2):
        closes = policy.closes_at(zones, opens)
        assert closes is not None
        periods.append((opens, closes))
        cursor = closes
    # Then is_open, checked every minute, is true exactly inside them
    for minute in range(2 * 24 * 60):
        at = start + timedelta(minutes=minute)
        inside = any(opens <= at < closes for opens, closes in periods)
        assert policy.is_open(zones, at) is inside, at


# --- several zones ---------------------------------------------------------------------------


def test_a_number_gets_the_zones_phonenumbers_knows_for_it() -> None:
    assert zones_for_number(MANHATTAN_NUMBER) == NY
    assert zones_for_number("+31612345678") == NL
    assert zones_for_number(IDAHO_NUMBER) == ("America/Boise", "America/Los_Angeles")
    toll_free = zones_for_number(TOLL_FREE_NUMBER)
    assert len(toll_free) == 42
    assert {"America/New_York", "Pacific/Guam", "Pacific/Honolulu"} <= set(toll_free)
    assert list(toll_free) == sorted(set(toll_free))


def test_an_invalid_number_falls_back_to_every_zone_of_its_calling_code() -> None:
    # +1 555 is no real area code: phonenumbers says Etc/Unknown
    assert zones_for_number("+15551234567") == zones_for_number(TOLL_FREE_NUMBER)


def test_a_number_of_no_country_or_no_number_at_all_has_no_zone() -> None:
    assert zones_for_number("+80012345678") == ()
    assert zones_for_number("not a number") == ()


def test_a_number_with_no_zone_cannot_be_judged_open() -> None:
    with pytest.raises(ValueError, match="no time zone is known"):
        CallingPolicy().is_open((), utc("2026-12-04 15:00"))
    with pytest.raises(ValueError, match="no time zone is known"):
        CallingPolicy().next_open((), utc("2026-12-04 15:00"))
    assert "no time zone is known" in describe_wait(CallingPolicy(), (), utc("2026-12-04 15:00"))


def test_a_zone_unknown_to_zoneinfo_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="time zone 'Mars/Olympus' is unknown to zoneinfo"):
        CallingPolicy().is_open(("Mars/Olympus",), utc("2026-12-04 15:00"))


def test_every_zone_phonenumbers_names_is_known_to_zoneinfo() -> None:
    zones = {zone for prefix_zones in TIMEZONE_DATA.values() for zone in prefix_zones}
    for zone in zones:
        assert ZoneInfo(zone).key == zone


def test_a_two_zone_number_is_open_only_when_open_in_both_zones() -> None:
    # Given an Idaho number in Mountain and Pacific time, in December
    zones = zones_for_number(IDAHO_NUMBER)
    policy = CallingPolicy()
    # Then 08:30 in Boise (07:30 in Los Angeles) is closed; it opens at 08:00 in Los Angeles
    assert not policy.is_open(zones, utc("2026-12-04 15:30"))
    assert policy.next_open(zones, utc("2026-12-04 15:30")) == utc("2026-12-04 16:00")
    # And it closes at 21:00 in Boise
    assert policy.closes_at(zones, utc("2026-12-04 16:00")) == utc("2026-12-05 04:00")


def test_a_toll_free_number_is_callable_only_where_all_42_zones_overlap() -> None:
    # Given 08:00-21:00 from Guam (UTC+10) to Pago Pago (UTC-11) and St John's (UTC-3:30)
    zones = zones_for_number(TOLL_FREE_NUMBER)
    policy = CallingPolicy()
    # Then the common window is 22:00Z (08:00 in Guam) to 00:30Z (21:00 in St John's)
    assert policy.next_open(zones, utc("2026-12-04 12:00")) == utc("2026-12-04 22:00")
    assert policy.closes_at(zones, utc("2026-12-04 22:00")) == utc("2026-12-05 00:30")


def test_a_window_that_never_overlaps_across_zones_never_opens() -> None:
    # Given one hour in Tokyo and Amsterdam, 8 hours apart
    policy, zones = CallingPolicy.parse("08:00-09:00"), ("Asia/Tokyo", "Europe/Amsterdam")
    assert policy.next_open(zones, utc("2026-12-04 12:00")) is None
    assert "never open in all 2 zones" in describe_wait(policy, zones, utc("2026-12-04 12:00"))


def test_zone_group_is_stable_whatever_the_order_or_repetition() -> None:
    assert zone_group(("b/B", "a/A", "b/B")) == "a/A|b/B"
    assert zone_group(zones_for_number(IDAHO_NUMBER)) == "America/Boise|America/Los_Angeles"
    assert zone_group(()) == ""


def test_the_wait_is_described_in_the_callees_local_time_and_in_utc() -> None:
    text = describe_wait(CallingPolicy(), NY, utc("2026-12-04 03:00"))
    assert text == (
        "window 08:00-21:00 mon-sun closed in America/New_York until 2026-12-04 08:00 local "
        "(13:00Z)"
    )
    # With several zones, the closed ones are counted and the last to open gives the local time
    text = describe_wait(CallingPolicy(), zones_for_number(IDAHO_NUMBER), utc("2026-12-04 15:30"))
    assert text == (
        "window 08:00-21:00 mon-sun closed in 1 of 2 zones (America/Los_Angeles) until "
        "2026-12-04 08:00 in America/Los_Angeles (16:00Z)"
    )
    # And an open window says so
    text = describe_wait(CallingPolicy(), NY, utc("2026-12-04 15:00"))
    assert text == "window 08:00-21:00 mon-sun open in America/New_York"
    # And a local opening on another UTC date shows that date
    text = describe_wait(CallingPolicy.parse("20:00-21:00"), NY, utc("2026-12-04 03:00"))
    assert text.endswith("until 2026-12-04 20:00 local (2026-12-05 01:00Z)")


# --- properties ------------------------------------------------------------------------------

#: Zones with the awkward features: half- and quarter-hour offsets, half-hour DST (Lord Howe),
#: DST changes at midnight (Havana, Santiago), Ramadan DST (Casablanca), +14 and -11.
PROPERTY_ZONES = [
    "Europe/Amsterdam",
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",
    "America/Havana",
    "America/Santiago",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "Africa/Casablanca",
    "UTC",
]
#: Instants near which zones change their clocks, to draw instants around.
DST_CHANGES = [
    utc("2026-03-08 07:00"),
    utc("2026-03-29 01:00"),
    utc("2026-04-05 03:00"),
    utc("2026-09-06 04:00"),
    utc("2026-10-25 01:00"),
    utc("2026-11-01 05:00"),
]
SAMPLES = 50
PROPERTIES = settings(max_examples=200, deadline=None)

policies = st.builds(
    CallingPolicy,
    st.tuples(st.integers(0, 24 * 60 - 1), st.integers(1, 24 * 60))
    .filter(lambda ends: ends[0] != ends[1])
    .map(lambda ends: CallingWindow(*ends)),
    st.frozensets(st.integers(0, 6), min_size=1),
)
zone_sets = st.lists(st.sampled_from(PROPERTY_ZONES), min_size=1, max_size=3, unique=True).map(
    tuple
)
instants = st.one_of(
    st.datetimes(datetime(2020, 1, 1), datetime(2035, 12, 31), timezones=st.just(UTC)),
    st.builds(
        lambda change, offset_s: change + timedelta(seconds=offset_s),
        st.sampled_from(DST_CHANGES),
        st.integers(-3 * 86_400, 3 * 86_400),
    ),
)


def _between(start: datetime, end: datetime, count: int) -> list[datetime]:
    """``count`` instants spread over [start, end); none when it is empty."""
    if end <= start:
        return []
    step = (end - start) / count
    return [start + step * index for index in range(count)]


@PROPERTIES
@given(policy=policies, zones=zone_sets, at=instants)
def test_next_open_is_open_and_nothing_before_it_is(
    policy: CallingPolicy, zones: tuple[str, ...], at: datetime
) -> None:
    opens = policy.next_open(zones, at)
    if opens is None:
        # Then no sampled instant in the whole horizon is open
        horizon_end = at + timedelta(seconds=HORIZON_S)
        assert not any(policy.is_open(zones, t) for t in _between(at, horizon_end, SAMPLES))
        return
    assert opens >= at
    assert policy.is_open(zones, opens)
    assert not any(policy.is_open(zones, t) for t in _between(at, opens, SAMPLES))
    if opens - ONE_SECOND >= at:
        assert not policy.is_open(zones, opens - ONE_SECOND)


@PROPERTIES
@given(policy=policies, zones=zone_sets, at=instants)
def test_an_open_instant_is_its_own_next_opening(
    policy: CallingPolicy, zones: tuple[str, ...], at: datetime
) -> None:
    if policy.is_open(zones, at):
        assert policy.next_open(zones, at) == at
    else:
        assert policy.next_open(zones, at) != at
        assert policy.closes_at(zones, at) == at


@PROPERTIES
@given(policy=policies, zones=zone_sets, at=instants)
def test_closes_at_ends_the_open_period_that_holds_the_instant(
    policy: CallingPolicy, zones: tuple[str, ...], at: datetime
) -> None:
    opens = policy.next_open(zones, at)
    if opens is None:
        return
    closes = policy.closes_at(zones, opens)
    if closes is None:
        # Then it stays open through the whole horizon
        horizon_end = opens + timedelta(seconds=HORIZON_S)
        assert all(policy.is_open(zones, t) for t in _between(opens, horizon_end, SAMPLES))
        return
    assert closes > opens
    assert policy.is_open(zones, max(opens, closes - ONE_SECOND))
    assert not policy.is_open(zones, closes)
    assert all(policy.is_open(zones, t) for t in _between(opens, closes, SAMPLES))
