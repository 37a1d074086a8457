"""Time zones of a phone number, from phonenumbers' prefix-to-zone table.

phonenumbers maps number prefixes to IANA zones (``phonenumbers.tzdata.TIMEZONE_DATA``, longest
prefix wins). A fixed line usually gets one zone (+1 212 -> America/New_York); a number that is
not tied to a place gets every zone of its country calling code (a +1 800 number gets all 42
NANP zones from Pacific/Guam to America/St_Johns, a Russian mobile 16 zones from
Europe/Bucharest to Asia/Anadyr), and some area codes span two zones (+1 208 320: America/Boise
and America/Los_Angeles).

phonenumbers answers ``Etc/Unknown`` only for a number it judges invalid. Then we fall back to
every zone its table holds for the number's country calling code: calling codes are prefix-free,
so every table entry starting with that code belongs to it, and their union is the widest (so
strictest, as a window must be open in all zones) honest answer. We do not narrow by region:
the table is keyed by digits, not regions, and an invalid number's digits are no evidence.
Calling codes the table does not hold at all (+800 freephone, +870 Inmarsat, +881/+882/+883
global networks...) and text that does not parse give an empty tuple: NO zone is known, and the
caller must treat that as "cannot judge the window" (refuse with a reason), never as "always open".
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers.timezone import UNKNOWN_TIMEZONE, time_zones_for_number
from phonenumbers.tzdata import TIMEZONE_DATA

from cmvoice.instructions import parse_international


def zones_for_number(e164: str) -> tuple[str, ...]:
    """The IANA zones of an E.164 number, sorted and de-duplicated; ``()`` when none is known.

    A valid number gets phonenumbers' own answer; an invalid one every zone of its country
    calling code (see the module docstring); an unknown calling code or unparsable text ``()``.
    """
    try:
        number = parse_international(e164)
    except phonenumbers.NumberParseException:
        return ()
    zones = set(time_zones_for_number(number))
    zones.discard(UNKNOWN_TIMEZONE)
    if not zones:
        return zones_for_calling_code(number.country_code or 0)
    return tuple(sorted(zones))


@lru_cache(maxsize=256)
def zones_for_calling_code(calling_code: int) -> tuple[str, ...]:
    """Every zone phonenumbers' table holds for a country calling code (``()`` if none)."""
    code = str(calling_code)
    zones = {
        zone
        for prefix, prefix_zones in TIMEZONE_DATA.items()
        if prefix.startswith(code)
        for zone in prefix_zones
    }
    zones.discard(UNKNOWN_TIMEZONE)
    return tuple(sorted(zones))


def zone_group(zones: tuple[str, ...]) -> str:
    """A stable key for a set of zones (sorted, ``|``-joined); ``""`` for no zone at all.

    Numbers with the same zones open and close together, so the pacer keeps one backlog each.
    """
    return "|".join(sorted(set(zones)))


def group_zones(group: str) -> tuple[str, ...]:
    """The zones of a ``zone_group`` key, back as a tuple."""
    return tuple(group.split("|"))
