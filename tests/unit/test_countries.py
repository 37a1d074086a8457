"""Allowed countries: ISO codes in, the region of a number out, shared calling codes told apart."""

from __future__ import annotations

import phonenumbers
import pytest

from cmvoice.rules.countries import (
    country_allowed,
    format_countries,
    parse_countries,
    region_of,
)

#: A Toronto-area (+1 613) number: +1 as the US, but Canadian.
CANADIAN_NUMBER = "+16135550123"
MANHATTAN_NUMBER = "+12124567890"
#: A freephone number of no country (+800, the Universal International Freephone Number).
UIFN_NUMBER = "+80012345678"


def test_countries_are_read_case_insensitively_with_spaces() -> None:
    assert parse_countries("NL,BE,DE") == {"NL", "BE", "DE"}
    assert parse_countries(" nl, Be ,de") == {"NL", "BE", "DE"}
    assert format_countries(parse_countries("de,nl,be")) == "BE,DE,NL"


@pytest.mark.parametrize("text", ["", "   "])
def test_no_countries_means_every_country(text: str) -> None:
    countries = parse_countries(text)
    assert countries == frozenset()
    assert format_countries(countries) == ""
    assert country_allowed(MANHATTAN_NUMBER, countries)
    assert country_allowed(UIFN_NUMBER, countries)


@pytest.mark.parametrize(
    ("text", "bad"),
    [("NL,XX", "XX"), ("NLD", "NLD"), ("NL,,BE", ""), ("N L", "N L"), ("001", "001")],
)
def test_a_bad_country_is_refused_naming_the_rule_and_quoting_the_code(text: str, bad: str) -> None:
    with pytest.raises(ValueError, match="ISO 3166 alpha-2") as refused:
        parse_countries(text)
    assert f"{bad!r} is not a country" in str(refused.value)


def test_a_common_mistake_gets_a_hint() -> None:
    with pytest.raises(ValueError, match=r"'uk' is not a country.*did you mean GB\?"):
        parse_countries("nl,uk")


def test_every_region_phonenumbers_supports_is_accepted() -> None:
    regions = ",".join(sorted(phonenumbers.SUPPORTED_REGIONS)).lower()
    assert parse_countries(regions) == phonenumbers.SUPPORTED_REGIONS


@pytest.mark.parametrize(
    ("number", "region"),
    [
        (CANADIAN_NUMBER, "CA"),
        (MANHATTAN_NUMBER, "US"),
        ("+17875551234", "PR"),
        ("+14412345678", "BM"),
        ("+18765551234", "JM"),
        ("+79161234567", "RU"),
        ("+77011234567", "KZ"),
        ("+447912345678", "GB"),
        ("+447797123456", "JE"),
        ("+390669812345", "VA"),
        ("+31612345678", "NL"),
    ],
)
def test_a_number_gets_its_own_region_even_when_its_calling_code_is_shared(
    number: str, region: str
) -> None:
    assert region_of(number) == region


@pytest.mark.parametrize("text", [UIFN_NUMBER, "+88213123456", "not a number", "", "+999123"])
def test_a_number_of_no_country_has_no_region(text: str) -> None:
    assert region_of(text) is None


def test_only_numbers_of_the_allowed_countries_are_allowed() -> None:
    # Given calls allowed to the US only
    allowed = parse_countries("US")
    # Then a Canadian +1 number is not allowed, a New York one is
    assert country_allowed(MANHATTAN_NUMBER, allowed)
    assert not country_allowed(CANADIAN_NUMBER, allowed)
    # And a number of no country is not allowed once any country is named
    assert not country_allowed(UIFN_NUMBER, allowed)
    assert country_allowed(CANADIAN_NUMBER, parse_countries("US,CA"))
