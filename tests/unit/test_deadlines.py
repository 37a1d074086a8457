"""A campaign's deadline: ``--until`` an instant with its zone, or ``--valid-for`` a duration."""

from __future__ import annotations

import pytest

from cmvoice.rules.deadlines import deadline_ms

#: 2026-11-26T12:00:00Z in ms.
NOW_MS = 1_795_694_400_000
HOUR_MS = 3_600_000


@pytest.mark.parametrize(
    ("until", "deadline"),
    [
        ("2026-11-26T18:00Z", NOW_MS + 6 * HOUR_MS),
        ("2026-11-26T18:00z", NOW_MS + 6 * HOUR_MS),
        ("2026-11-26T18:00:00+00:00", NOW_MS + 6 * HOUR_MS),
        ("2026-11-26T19:00+01:00", NOW_MS + 6 * HOUR_MS),
        ("2026-11-26T13:00-05:00", NOW_MS + 6 * HOUR_MS),
        (" 2026-11-26T12:00:01Z ", NOW_MS + 1_000),
    ],
)
def test_until_is_an_instant_with_its_zone_read_as_utc_milliseconds(
    until: str, deadline: int
) -> None:
    assert deadline_ms(until, None, NOW_MS) == deadline


@pytest.mark.parametrize(
    ("valid_for", "deadline"),
    [
        ("8h", NOW_MS + 8 * HOUR_MS),
        ("30m", NOW_MS + HOUR_MS // 2),
        ("90", NOW_MS + 90_000),
        ("1.5h", NOW_MS + 3 * HOUR_MS // 2),
        ("2d", NOW_MS + 48 * HOUR_MS),
        ("250ms", NOW_MS + 250),
    ],
)
def test_valid_for_is_a_duration_from_now(valid_for: str, deadline: int) -> None:
    assert deadline_ms(None, valid_for, NOW_MS) == deadline


@pytest.mark.parametrize(("until", "valid_for"), [(None, None), ("", ""), (None, ""), ("", None)])
def test_no_deadline_given_means_none(until: str | None, valid_for: str | None) -> None:
    assert deadline_ms(until, valid_for, NOW_MS) is None


def test_both_options_at_once_are_refused_naming_both() -> None:
    with pytest.raises(ValueError, match="--until and --valid-for: give one of them, not both"):
        deadline_ms("2026-11-26T18:00Z", "8h", NOW_MS)


@pytest.mark.parametrize("until", ["2026-11-26T18:00", "2026-11-26", "2026-11-26 18:00:00"])
def test_an_instant_without_a_time_zone_is_refused_saying_why(until: str) -> None:
    # Given an instant in no zone: the server's local time would be a guess
    with pytest.raises(ValueError, match="give the time zone") as caught:
        deadline_ms(until, None, NOW_MS)

    # Then the message names the option, quotes the value, shows the form and gives the reason
    message = str(caught.value)
    assert message.startswith(f"--until {until!r}: give the time zone (2026-12-24T18:00Z for UTC)")
    assert "hours off" in message


@pytest.mark.parametrize(
    "until", ["2026-11-26T12:00Z", "2026-11-26T11:59:59Z", "2020-01-01T00:00Z"]
)
def test_an_instant_that_is_not_in_the_future_is_refused(until: str) -> None:
    with pytest.raises(ValueError, match=rf"^--until {until!r}: is not in the future$"):
        deadline_ms(until, None, NOW_MS)


@pytest.mark.parametrize("until", ["tomorrow", "26-11-2026 18:00", "2026-13-01T00:00Z"])
def test_an_unreadable_instant_is_refused_with_an_example(until: str) -> None:
    with pytest.raises(ValueError, match="must be an ISO 8601 instant such as 2026-12-24T18:00Z"):
        deadline_ms(until, None, NOW_MS)


@pytest.mark.parametrize(
    ("valid_for", "rule"),
    [
        ("0", "must be longer than 0"),
        ("0s", "must be longer than 0"),
        ("8 hours", "must be seconds"),
        ("-1h", "must be seconds"),
    ],
)
def test_a_duration_that_is_zero_or_unreadable_is_refused_naming_the_option(
    valid_for: str, rule: str
) -> None:
    with pytest.raises(ValueError, match=rule) as caught:
        deadline_ms(None, valid_for, NOW_MS)
    assert str(caught.value).startswith(f"--valid-for {valid_for!r}: {rule}")
