"""Masking before anything is logged or shown: phone numbers, passwords in URLs, quoted values."""

from __future__ import annotations

import pytest

from cmvoice.privacy import hidden_value, mask_number, quote_value, redact_url


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+31612345678", "+31******678"),
        ("+12124567890", "+12******890"),
        ("0031612345678", "003*******678"),
        ("+447700900123", "+44*******123"),
        ("+123456789", "+12****789"),
        # too short to keep both ends: only the last two show
        ("+3161", "***61"),
        ("12345678", "******78"),
        ("12", "*12"),
        # CM's word for a withheld number, and nothing at all
        ("anonymous", "anonymous"),
        ("", ""),
        (None, ""),
    ],
)
def test_a_number_keeps_enough_to_recognise_and_too_little_to_dial(
    number: str | None, masked: str
) -> None:
    assert mask_number(number) == masked


@pytest.mark.parametrize(
    "number", ["+31612345678", "+12124567890", "0031612345678", "+447700900123", "+123456789"]
)
def test_a_masked_number_hides_at_least_three_digits_and_keeps_its_length(number: str) -> None:
    # Given / When
    masked = mask_number(number)

    # Then the reader sees its length and ends, never the digits in between
    assert len(masked) == len(number)
    assert masked.count("*") >= 3
    assert number[3:-3] not in masked


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@redis.internal:6379/0", "redis://:****@redis.internal:6379/0"),
        ("redis://app:s3cret@redis.internal/0", "redis://app:****@redis.internal/0"),
        ("amqp://guest:guest@rabbit:5672//", "amqp://guest:****@rabbit:5672//"),
        ("rediss://u:p%40ss@cache.example:6380/1", "rediss://u:****@cache.example:6380/1"),
        ("redis://u:p@ss@h/0", "redis://u:****@h/0"),
        # nothing secret: left exactly as it is
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://app@redis.internal/0", "redis://app@redis.internal/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("", ""),
    ],
)
def test_a_urls_password_is_replaced_and_the_rest_kept(url: str, shown: str) -> None:
    # Given a broker or Redis URL
    # When / Then
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("short", "'short'"),
        (42, "42"),
        (None, "None"),
        ("x" * 38, "'" + "x" * 38 + "'"),
        ("x" * 39, "'" + "x" * 34 + "...' (39 characters)"),
        ('say "hi"' + "y" * 40, '\'say "hi"' + "y" * 26 + "...' (48 characters)"),
        (list(range(30)), "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ... (30 items)"),
        ({"k": "v" * 50, "l": 1}, "{'k': '" + "v" * 28 + "... (2 items)"),
    ],
)
def test_a_quoted_value_is_short_and_still_reads_as_its_type(value: object, quoted: str) -> None:
    assert quote_value(value) == quoted
    assert len(quote_value(value).split("...")[0]) <= 40


@pytest.mark.parametrize(
    ("secret", "shown"), [("123456", "<hidden, 6 characters>"), (123456, "<hidden int>")]
)
def test_a_secret_is_described_never_shown(secret: object, shown: str) -> None:
    assert hidden_value(secret) == shown
