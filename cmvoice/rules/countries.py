"""Allowed countries: which callees may be called, by the region phonenumbers gives a number.

Several regions share a country calling code (+1: US, CA, PR, JM...; +7: RU, KZ; +44: GB, JE, GG,
IM; +39: IT, VA). ``region_of`` asks phonenumbers for the region of the whole number, which
reads the area code or national prefix, so a Canadian +1 613 number is CA, not US.
"""

from __future__ import annotations

import phonenumbers

from cmvoice.instructions import parse_international
from cmvoice.privacy import quote_value

#: Codes people often write that ISO 3166 spells differently, for a hint in the error.
COMMON_MISTAKES = {"UK": "GB", "EL": "GR", "KO": "KR"}
# What phonenumbers answers for a number of no country (+800, +870, ...) or an unknown one.
_NO_REGIONS = frozenset({"001", "ZZ"})


def parse_countries(text: str) -> frozenset[str]:
    """``"NL,be, DE"`` -> ``{"NL", "BE", "DE"}``; an empty text means every country.

    Codes are ISO 3166-1 alpha-2, in any case, that phonenumbers supports. Raises
    ``ValueError`` naming the rule and quoting the bad code; the caller adds the field's name.
    """
    if not text.strip():
        return frozenset()
    codes: set[str] = set()
    for item in text.split(","):
        code = item.strip().upper()
        if code not in phonenumbers.SUPPORTED_REGIONS:
            hint = COMMON_MISTAKES.get(code)
            raise ValueError(
                f"{quote_value(item.strip())} is not a country: countries are ISO 3166 alpha-2 "
                "codes separated by commas, e.g. NL,BE,DE"
                + (f" (did you mean {hint}?)" if hint else "")
            )
        codes.add(code)
    return frozenset(codes)


def format_countries(countries: frozenset[str]) -> str:
    """The canonical text of a country set: sorted, comma-separated; ``""`` for all."""
    return ",".join(sorted(countries))


def region_of(e164: str) -> str | None:
    """The ISO 3166 alpha-2 region of a number (``+16135550123`` -> ``CA``); None if none.

    None for text that does not parse, and for numbers of no country (+800 freephone, +870
    Inmarsat, +881/+882/+883 global networks), for which phonenumbers says ``001``.
    """
    try:
        number = parse_international(e164)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(number)
    return None if region is None or region in _NO_REGIONS else str(region)


def country_allowed(e164: str, allowed: frozenset[str]) -> bool:
    """Whether a number may be called: always with no allowed set, else if its region is in it.

    A number without a region (see :func:`region_of`) is allowed only when every country is.
    """
    if not allowed:
        return True
    return region_of(e164) in allowed
