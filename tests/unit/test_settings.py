"""Settings: durations, rates, calling rules read from the environment, and the broker's kind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cmvoice.config import Rate, Settings, _optional_rate, load_settings, parse_duration, parse_rate
from cmvoice.errors import ConfigurationError

LEDGER_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No CMVOICE_ variable set and no .env file: each test sets what it reads."""
    for name in list(os.environ):
        if name.startswith("CMVOICE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


# --- durations and rates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (0.5, 0.5),
        ("30", 30.0),
        ("0.5", 0.5),
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172_800.0),
        (" 1.5 h ", 5400.0),
        ("0", 0.0),
    ],
)
def test_a_duration_is_seconds_or_a_number_with_a_unit(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "-5", "5 minutes", "1h30m", "5x", "inf", "nan", "m"])
def test_an_unreadable_duration_is_refused_with_the_forms_it_takes(value: str) -> None:
    with pytest.raises(ValueError, match=r"must be seconds \(30, 0.5\) or a number with a unit"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("text", "count", "period_s"),
    [
        ("10/s", 10, 1),
        ("600/m", 600, 60),
        ("5/h", 5, 3600),
        ("3/10m", 3, 600),
        ("5/10s", 5, 10),
        ("10", 10, 1),
        ("0.5/s", 0.5, 1),
        (" 2 / 3 h ", 2, 10_800),
    ],
)
def test_a_rate_is_a_count_per_period(text: str, count: float, period_s: float) -> None:
    # Given / When
    rate = parse_rate(text)

    # Then
    assert rate == Rate(count, period_s)
    assert rate.interval_s == period_s / count
    assert rate.per_second == count / period_s


@pytest.mark.parametrize("text", ["", "0", "0/s", "-1/s", "fast", "10/x", "10/", "10/ms", "/s"])
def test_a_rate_that_is_not_positive_or_unreadable_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="must be a positive rate such as 10/s, 600/m or 5/10s"):
        parse_rate(text)


@pytest.mark.parametrize("text", ["5/0s", "5/0m", "1/00h"])
def test_a_rate_per_zero_seconds_is_refused_not_taken_as_no_limit(text: str) -> None:
    # Given a rate whose period is zero: an interval of 0 would mean "no limit at all"
    # When / Then it is refused like any rate that is not positive
    with pytest.raises(ValueError, match="must be a positive rate such as 10/s, 600/m or 5/10s"):
        parse_rate(text)


def test_an_account_rate_per_zero_seconds_is_refused_naming_the_variable(
    environment: pytest.MonkeyPatch,
) -> None:
    # Given CMVOICE_RATE_LIMIT=5/0s
    environment.setenv("CMVOICE_RATE_LIMIT", "5/0s")

    # When / Then the settings refuse it, instead of switching the account's limit off
    with pytest.raises(ConfigurationError, match=r"CMVOICE_RATE_LIMIT: must be a positive rate"):
        load_settings()


def test_a_rate_given_as_a_rate_is_taken_as_it_is() -> None:
    rate = Rate(3, 600)
    assert parse_rate(rate) is rate


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (Rate(10, 1), "10/s"),
        (Rate(600, 60), "600/m"),
        (Rate(5, 3600), "5/h"),
        (Rate(3, 600), "3/10m"),
        (Rate(5, 10), "5/10s"),
        (Rate(1, 86_400), "1/24h"),
        (Rate(2, 90), "2/90s"),
        (Rate(0.5, 1), "0.5/s"),
        (Rate(1, 0.5), "2/s"),
    ],
)
def test_a_rate_is_written_per_one_unit_when_the_period_is_one_and_reads_back(
    rate: Rate, text: str
) -> None:
    # Given / When
    written = str(rate)

    # Then it is the short form, and reading it gives the same speed
    assert written == text
    assert parse_rate(written).per_second == rate.per_second


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("1000000/h", "1000000/h"),
        ("1234567/s", "1234567/s"),
        ("5/1000000s", "5/1000000s"),
        ("0.0000001/s", "0.0000001/s"),
        ("2.5/m", "2.5/m"),
    ],
)
def test_a_large_or_tiny_rate_is_written_in_a_form_parse_rate_reads_back(
    text: str, written: str
) -> None:
    # Given a rate with a count or period of many digits
    rate = parse_rate(text)

    # When it is written (a campaign keeps its rate as this text) and read again
    # Then the text has no exponent, and reads back as the same rate
    assert str(rate) == written
    assert parse_rate(str(rate)) == rate


@pytest.mark.parametrize("text", ["off", "OFF", " none ", "", "Off"])
def test_a_per_number_limit_of_off_none_or_nothing_switches_the_limit_off(text: str) -> None:
    assert _optional_rate(text) is None
    assert _optional_rate(None) is None


def test_a_per_number_limit_otherwise_is_a_rate() -> None:
    assert _optional_rate("3/10m") == Rate(3, 600)
    with pytest.raises(ValueError, match="positive rate"):
        _optional_rate("never")


def test_the_per_number_limit_can_be_switched_off_from_the_environment(
    environment: pytest.MonkeyPatch,
) -> None:
    # Given CMVOICE_PER_NUMBER_LIMIT=off
    environment.setenv("CMVOICE_PER_NUMBER_LIMIT", "off")

    # When / Then
    assert load_settings().per_number_limit is None


def test_without_a_per_number_limit_set_it_is_5_an_hour(environment: pytest.MonkeyPatch) -> None:
    assert load_settings().per_number_limit == Rate(5, 3600)


# --- concurrency slots kept for interactive calls ---------------------------------------------


@pytest.mark.parametrize(
    ("max_calls", "interactive", "campaign_limit"),
    [
        (50, 5, 45),
        (4, 1, 3),
        # none kept: campaigns may take every slot
        (50, 0, 50),
        # more kept than there are slots: the campaigns keep one
        (4, 4, 1),
        (3, 10, 1),
        (1, 5, 1),
    ],
)
def test_campaigns_leave_the_interactive_slots_free_but_keep_one(
    environment: pytest.MonkeyPatch, max_calls: int, interactive: int, campaign_limit: int
) -> None:
    # Given the account's slots and the ones kept for interactive calls
    environment.setenv("CMVOICE_MAX_CONCURRENT_CALLS", str(max_calls))
    environment.setenv("CMVOICE_INTERACTIVE_SLOTS", str(interactive))

    # When / Then: campaigns may hold the rest, and never fewer than one
    assert load_settings().campaign_slot_limit == campaign_limit


def test_five_slots_are_kept_for_interactive_calls_unless_set(
    environment: pytest.MonkeyPatch,
) -> None:
    settings = load_settings()
    assert settings.interactive_slots == 5
    assert settings.campaign_slot_limit == settings.max_concurrent_calls - 5


# --- calling rules from the environment -------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "field", "canonical"),
    [
        ("CMVOICE_CALLING_WINDOW", " 9:00 - 17:30 ", "calling_window", "09:00-17:30"),
        ("CMVOICE_CALLING_WINDOW", "22:00-00:00", "calling_window", "22:00-24:00"),
        ("CMVOICE_CALLING_DAYS", "MON-FRI", "calling_days", "mon-fri"),
        ("CMVOICE_CALLING_DAYS", "sat,sun,fri", "calling_days", "fri-sun"),
        ("CMVOICE_ALLOWED_COUNTRIES", " nl , be ,DE", "allowed_countries", ["BE", "DE", "NL"]),
        ("CMVOICE_ALLOWED_COUNTRIES", "", "allowed_countries", []),
    ],
)
def test_calling_rules_are_read_into_their_canonical_form(
    environment: pytest.MonkeyPatch, variable: str, value: str, field: str, canonical: object
) -> None:
    # Given a calling rule written loosely
    environment.setenv(variable, value)

    # When / Then
    assert getattr(load_settings(), field) == canonical


@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    [
        ("CMVOICE_CALLING_WINDOW", "25:00-26:00", "hours run 00..23"),
        ("CMVOICE_CALLING_WINDOW", "9-17", "is not a calling window"),
        ("CMVOICE_CALLING_WINDOW", "08:00-08:00", "empty calling window"),
        ("CMVOICE_CALLING_DAYS", "funday", "are not calling days"),
        ("CMVOICE_CALLING_DAYS", "mon-mon", "starts and ends on one day"),
        ("CMVOICE_ALLOWED_COUNTRIES", "NL,XX", "is not a country"),
        ("CMVOICE_RATE_LIMIT", "fast", "must be a positive rate"),
        ("CMVOICE_PER_NUMBER_LIMIT", "lots", "must be a positive rate"),
        ("CMVOICE_UNKNOWN_TIMEOUT", "soon", "must be seconds"),
    ],
)
def test_a_bad_setting_is_refused_naming_its_variable_the_rule_and_the_value(
    environment: pytest.MonkeyPatch, variable: str, value: str, rule: str
) -> None:
    # Given one bad value in the environment
    environment.setenv(variable, value)

    # When the settings are loaded
    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    # Then the message names the variable, says the rule and quotes the value
    message = str(caught.value)
    assert f"{variable}: " in message
    assert rule in message
    assert repr(value) in message


def test_every_bad_setting_is_named_at_once(environment: pytest.MonkeyPatch) -> None:
    # Given three bad calling rules
    environment.setenv("CMVOICE_CALLING_WINDOW", "all day")
    environment.setenv("CMVOICE_CALLING_DAYS", "weekdays")
    environment.setenv("CMVOICE_ALLOWED_COUNTRIES", "Netherlands")

    # When
    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    # Then each is named, so one run shows every fix to make
    for variable in ("CMVOICE_CALLING_WINDOW", "CMVOICE_CALLING_DAYS", "CMVOICE_ALLOWED_COUNTRIES"):
        assert variable in str(caught.value)


def test_the_calling_policy_is_built_from_the_window_and_days(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("CMVOICE_CALLING_WINDOW", "09:00-17:00")
    environment.setenv("CMVOICE_CALLING_DAYS", "mon-fri")
    assert str(load_settings().calling_policy) == "09:00-17:00 mon-fri"


# --- whether the broker is the ledger's Redis -------------------------------------------------


@pytest.mark.parametrize(
    ("broker_url", "redis_url", "same"),
    [
        # no broker: the embedded Redis is both
        (None, None, True),
        # a Redis broker and no ledger Redis of its own: the broker is the ledger
        (LEDGER_REDIS, None, True),
        (LEDGER_REDIS, LEDGER_REDIS, True),
        ("rediss://cache.example:6380/0", None, True),
        ("unix:///run/redis.sock", None, True),
        # a different Redis, or another database of the same one
        (LEDGER_REDIS, "redis://127.0.0.1:2/0", False),
        (LEDGER_REDIS, "redis://127.0.0.1:1/1", False),
        # RabbitMQ is never the ledger
        ("amqp://guest:guest@rabbit:5672//", LEDGER_REDIS, False),
    ],
)
def test_the_broker_is_the_ledgers_redis_only_when_both_are_one_redis_url(
    environment: pytest.MonkeyPatch, broker_url: str | None, redis_url: str | None, same: bool
) -> None:
    # Given / When
    settings = Settings(broker_url=broker_url, redis_url=redis_url)

    # Then: only then can messages go out in the ledger's own Lua step
    assert settings.broker_is_ledger_redis is same


def test_a_rabbitmq_broker_without_a_ledger_redis_is_refused_naming_the_variable(
    environment: pytest.MonkeyPatch,
) -> None:
    # Given RabbitMQ as the broker and no CMVOICE_REDIS_URL
    settings = Settings(broker_url="amqp://guest:guest@rabbit:5672//", redis_url=None)

    # When the ledger's Redis is asked for
    with pytest.raises(ConfigurationError, match="CMVOICE_REDIS_URL: required"):
        _ = settings.effective_redis_url
