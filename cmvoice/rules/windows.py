"""Calling windows: the local hours and weekdays in which a callee may be called.

A :class:`CallingPolicy` is a daily window (``08:00-21:00``) plus a set of weekdays (``mon-fri``),
read on the wall clock of the callee's time zone(s). The rules, exactly:

* The window's end is exclusive: ``08:00-21:00`` is open at 20:59:59 and closed at 21:00:00.
  ``00:00-24:00`` is the whole day.
* A window that crosses midnight (``22:00-02:00``) belongs to the day it STARTS on. With days
  ``mon-fri``, Friday 23:30 and Saturday 01:30 are open (Friday's window), Saturday 23:30 is
  closed, and Monday 01:30 is closed (that is Sunday's window).
* An instant is open in a zone when the wall clock of that zone, at that instant, reads a time
  inside an open window; nothing else. So across daylight-saving changes:
  on the spring-forward day the skipped hour does not exist, and a window inside it (Amsterdam's
  ``02:00-03:00`` on the last Sunday of March) is simply absent that day, while a window that
  starts inside it (``02:30-04:00``) opens at the jump (03:00 local). On the fall-back day the
  repeated hour happens twice and both passes are inside a window that covers it
  (New York's ``01:00-02:00`` is open for two real hours); a window that ends inside it
  (``22:00-01:30``) closes at the first 01:30, opens again when the clock goes back to 01:00
  and closes at the second 01:30.
* A number may have several zones (phonenumbers knows only the country for many numbers): the
  policy is open only at instants at which it is open in ALL of them.

``next_open`` and ``closes_at`` do not scan the clock: for every zone they compute the instants at
which the wall clock reaches the window's start or end (both passes of a repeated time, and the
DST jump itself, found to the second by bisection), judge each, and intersect the open spans of
the zones. _Spans are cached per policy, zones and UTC day, so the pacer's repeated
questions cost a cache look-up and a binary search.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cmvoice.privacy import quote_value

#: Day names in ``datetime.weekday()`` order (Monday is 0), as written in a days rule.
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: The calling window when none is configured: working hours and evenings, no nights.
DEFAULT_WINDOW = "08:00-21:00"
#: The calling days when none are configured.
DEFAULT_DAYS = "mon-sun"
#: How far ``next_open`` looks ahead: a full week plus a day, so a DST change or a window that
#: opens once a week is still found; beyond it the window is taken never to open.
HORIZON_S = 8 * 86_400

_MINUTES_PER_DAY = 24 * 60
_DAY_S = 86_400
# _Spans are computed per UTC day over this many days: enough for any instant of that day plus
# the horizon, and the day after it so a span that runs past the horizon is seen to.
_SPAN_DAYS = 10
_WINDOW_RE = re.compile(r"\s*([0-9]{1,2}):([0-9]{2})\s*-\s*([0-9]{1,2}):([0-9]{2})\s*")
_WINDOW_RULE = "a calling window is HH:MM-HH:MM in the callee's local time, e.g. 08:00-21:00"
_DAYS_RULE = "calling days are day names mon..sun, ranges such as mon-fri, or lists mon,wed,fri"


@dataclass(frozen=True)
class CallingWindow:
    """A daily window of local wall-clock time, in minutes after local midnight.

    ``end_minute`` is exclusive and may be 1440 (24:00). An end before the start means the window
    crosses midnight and ends on the next day.
    """

    start_minute: int
    end_minute: int

    def __post_init__(self) -> None:
        if not 0 <= self.start_minute < _MINUTES_PER_DAY:
            raise ValueError(f"calling window start minute {self.start_minute} is not 0..1439")
        if not 0 < self.end_minute <= _MINUTES_PER_DAY:
            raise ValueError(f"calling window end minute {self.end_minute} is not 1..1440")
        if self.start_minute == self.end_minute:
            raise ValueError(f"calling window {self} is empty: it starts where it ends")

    @property
    def crosses_midnight(self) -> bool:
        return self.end_minute < self.start_minute

    def __str__(self) -> str:
        return f"{_clock(self.start_minute)}-{_clock(self.end_minute)}"


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_window(text: str) -> CallingWindow:
    """``"08:00-21:00"`` -> a window; ``22:00-02:00`` crosses midnight; ``00:00-24:00`` is all day.

    An end of ``00:00`` means midnight at the end of the day (``22:00-00:00`` is
    ``22:00-24:00``). Raises ``ValueError`` naming the rule and quoting the text; the caller adds
    the field's name.
    """
    match = _WINDOW_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{quote_value(text)} is not a calling window: {_WINDOW_RULE}")
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    if start_h > 23 or end_h > 24 or start_m > 59 or end_m > 59 or (end_h == 24 and end_m):
        raise ValueError(
            f"{quote_value(text)} is not a calling window: hours run 00..23 and minutes 00..59 "
            "(24:00 only as the end)"
        )
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if start == end:
        raise ValueError(
            f"{quote_value(text)} is an empty calling window: it starts where it ends "
            "(write 00:00-24:00 for the whole day)"
        )
    return CallingWindow(start, end or _MINUTES_PER_DAY)


def parse_days(text: str) -> frozenset[int]:
    """``"mon-fri"`` -> ``{0, 1, 2, 3, 4}`` (``datetime.weekday()`` numbers, Monday is 0).

    Items are separated by commas; each is a day or a range ``a-b`` that may wrap past Sunday
    (``fri-mon`` is Friday to Monday). Case and spaces do not matter. Raises ``ValueError``
    naming the rule and quoting the text.
    """
    days: set[int] = set()
    for item in text.split(","):
        first, dash, last = (part.strip().lower() for part in item.partition("-"))
        if first not in DAY_NAMES or (dash and last not in DAY_NAMES):
            raise ValueError(f"{quote_value(text)} are not calling days: {_DAYS_RULE}")
        start = DAY_NAMES.index(first)
        stop = DAY_NAMES.index(last) if dash else start
        if dash and stop == start:
            raise ValueError(
                f"{quote_value(text)} are not calling days: the range {item.strip()!r} starts "
                f"and ends on one day (write {first!r} for that day, or mon-sun for all)"
            )
        days.update((start + offset) % 7 for offset in range((stop - start) % 7 + 1))
    return frozenset(days)


def format_days(days: frozenset[int]) -> str:
    """The canonical text of a day set: runs as ranges (``mon-fri``, ``fri-mon``), others listed.

    ``parse_days(format_days(days)) == days`` for every non-empty set.
    """
    if len(days) == 7:
        return "mon-sun"
    if not days:
        return "none"
    # Start after a day that is absent, so a run that wraps past Sunday stays one range.
    gap = min(d for d in range(7) if d not in days)
    runs: list[list[int]] = []
    for offset in range(1, 8):
        day = (gap + offset) % 7
        if day not in days:
            continue
        if runs and (runs[-1][-1] + 1) % 7 == day:
            runs[-1].append(day)
        else:
            runs.append([day])
    runs.sort(key=lambda run: run[0])
    return ",".join(
        DAY_NAMES[run[0]] if len(run) == 1 else f"{DAY_NAMES[run[0]]}-{DAY_NAMES[run[-1]]}"
        for run in runs
    )


@dataclass(frozen=True)
class CallingPolicy:
    """A calling window on a set of weekdays; ``str()`` gives ``"08:00-21:00 mon-fri"``."""

    window: CallingWindow = field(default_factory=lambda: parse_window(DEFAULT_WINDOW))
    days: frozenset[int] = field(default_factory=lambda: parse_days(DEFAULT_DAYS))

    def __post_init__(self) -> None:
        if not self.days or not self.days <= frozenset(range(7)):
            raise ValueError(f"calling days {sorted(self.days)} must be a non-empty subset of 0..6")

    @classmethod
    def parse(cls, window: str = DEFAULT_WINDOW, days: str = DEFAULT_DAYS) -> CallingPolicy:
        return cls(parse_window(window), parse_days(days))

    def __str__(self) -> str:
        return f"{self.window} {format_days(self.days)}"

    @property
    def always_open(self) -> bool:
        """Every hour of every day: no time zone can make it closed."""
        return str(self.window) == "00:00-24:00" and len(self.days) == 7

    def open_on_wall_clock(self, local: datetime) -> bool:
        """Whether a local wall-clock reading (date and time of day) lies in an open window."""
        minute = local.hour * 60 + local.minute
        weekday = local.weekday()
        start, end = self.window.start_minute, self.window.end_minute
        if start < end:
            return start <= minute < end and weekday in self.days
        # Crossing midnight: the part after midnight belongs to the previous day's window.
        return (minute >= start and weekday in self.days) or (
            minute < end and (weekday - 1) % 7 in self.days
        )

    def is_open(self, zones: tuple[str, ...], at: datetime) -> bool:
        """True when the window is open in every one of ``zones`` at the instant ``at``.

        ``at`` must be timezone-aware. Raises ``ValueError`` for an empty ``zones``: a number
        without a known zone cannot be judged, and "open in all of none" must not mean yes.
        """
        instant = _as_utc(at)
        return all(self.open_on_wall_clock(instant.astimezone(_zone(z))) for z in _known(zones))

    def next_open(self, zones: tuple[str, ...], at: datetime) -> datetime | None:
        """The earliest instant >= ``at`` at which the window is open in every zone (UTC).

        ``at`` itself (in UTC) when open now; None when no such instant comes within
        :data:`HORIZON_S` (e.g. a one-hour window in two zones ten hours apart never overlaps).
        """
        at_s = _as_utc(at).timestamp()
        spans = _spans_around(self, _known(zones), at_s)
        index = bisect.bisect_right(spans, (at_s, float("inf")))
        if index and spans[index - 1][1] > at_s:
            return _as_utc(at)
        if index == len(spans) or spans[index][0] >= at_s + HORIZON_S:
            return None
        return datetime.fromtimestamp(spans[index][0], UTC)

    def closes_at(self, zones: tuple[str, ...], at: datetime) -> datetime | None:
        """When the open period that ``at`` lies in ends (UTC): the first closed instant after it.

        ``at`` itself when closed now; None when it stays open for the whole horizon
        (e.g. ``00:00-24:00 mon-sun``). A period runs on across midnight when the next day's
        window starts where this one ends, and across every zone it must be open in.
        """
        at_s = _as_utc(at).timestamp()
        spans = _spans_around(self, _known(zones), at_s)
        index = bisect.bisect_right(spans, (at_s, float("inf")))
        if not index or spans[index - 1][1] <= at_s:
            return _as_utc(at)
        end_s = spans[index - 1][1]
        return None if end_s >= at_s + HORIZON_S else datetime.fromtimestamp(end_s, UTC)


def describe_wait(policy: CallingPolicy, zones: tuple[str, ...], at: datetime) -> str:
    """Why a call to a number in ``zones`` waits at ``at``, in one short line.

    E.g. ``window 08:00-21:00 mon-sun closed in America/New_York until 2026-12-04 08:00 local
    (13:00Z)``. With several zones it counts the closed ones and tells the local time in the
    zone whose window opens last.
    """
    if not zones:
        return f"window {policy}: no time zone is known for this number"
    instant = _as_utc(at)
    names = sorted(set(zones))
    closed = [z for z in names if not policy.open_on_wall_clock(instant.astimezone(_zone(z)))]
    if not closed:
        return f"window {policy} open in {_zone_list(names, len(names))}"
    where = _zone_list(closed, len(names))
    opens = policy.next_open(tuple(names), instant)
    if opens is None:
        return (
            f"window {policy} closed in {where}; never open in all {len(names)} zones at once "
            f"within {HORIZON_S // 86_400} days"
        )
    # The zone that opens last is the one still closed a second before the common opening.
    before = opens - timedelta(seconds=1)
    last = next(
        (z for z in closed if not policy.open_on_wall_clock(before.astimezone(_zone(z)))),
        closed[0],
    )
    local = opens.astimezone(_zone(last))
    local_text = f"{local:%Y-%m-%d %H:%M} " + ("local" if len(names) == 1 else f"in {last}")
    utc_text = f"{opens:%H:%M}Z" if opens.date() == local.date() else f"{opens:%Y-%m-%d %H:%M}Z"
    return f"window {policy} closed in {where} until {local_text} ({utc_text})"


def _zone_list(closed: list[str], total: int) -> str:
    shown = ", ".join(closed[:3]) + (f" and {len(closed) - 3} more" if len(closed) > 3 else "")
    return shown if total == 1 else f"{len(closed)} of {total} zones ({shown})"


def _as_utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"instant {at.isoformat()} has no time zone: pass an aware datetime")
    return at.astimezone(UTC)


def _known(zones: tuple[str, ...]) -> tuple[str, ...]:
    if not zones:
        raise ValueError(
            "no time zone is known for this number, so its calling window cannot be judged"
        )
    return tuple(sorted(set(zones)))


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"time zone {quote_value(name)} is unknown to zoneinfo (is the tz database installed?)"
        ) from None


# --- open spans: [start_s, end_s) in Unix seconds, sorted and disjoint ----------------------

_Spans = tuple[tuple[float, float], ...]


def _spans_around(policy: CallingPolicy, zones: tuple[str, ...], at_s: float) -> _Spans:
    lo_s = int(at_s // _DAY_S) * _DAY_S
    return _open_spans(policy, zones, lo_s, lo_s + _SPAN_DAYS * _DAY_S)


@lru_cache(maxsize=1024)
def _open_spans(policy: CallingPolicy, zones: tuple[str, ...], lo_s: int, hi_s: int) -> _Spans:
    spans = _zone_open_spans(policy, zones[0], lo_s, hi_s)
    for name in zones[1:]:
        spans = _intersect(spans, _zone_open_spans(policy, name, lo_s, hi_s))
    return spans


@lru_cache(maxsize=4096)
def _zone_open_spans(policy: CallingPolicy, name: str, lo_s: int, hi_s: int) -> _Spans:
    """The open spans of one zone within [lo_s, hi_s), from its candidate boundaries.

    Openness can change only where the wall clock reaches the window's start or end, or jumps
    (DST). Not at midnight: a window crossing it continues as the previous day's, and one ending
    at 24:00 has 00:00 as its end. A jump changes it only across a boundary inside the skipped
    or repeated hour, and such a boundary maps to two different instants (fold 0 and 1) with
    the jump between them, which bisection finds. Between consecutive candidates nothing
    changes, so judging each candidate decides the whole stretch up to the next one.
    """
    zone = _zone(name)
    boundaries = {policy.window.start_minute, policy.window.end_minute % _MINUTES_PER_DAY}
    day = datetime.fromtimestamp(lo_s, zone).date() - timedelta(days=1)
    last_day = datetime.fromtimestamp(hi_s, zone).date() + timedelta(days=1)
    candidates = {lo_s}
    while day <= last_day:
        for minute in boundaries:
            candidates.update(_instants_of_wall_time(zone, day, minute))
        day += timedelta(days=1)
    ordered = sorted(c for c in candidates if lo_s <= c < hi_s)
    spans: list[tuple[float, float]] = []
    for index, start in enumerate(ordered):
        if not policy.open_on_wall_clock(datetime.fromtimestamp(start, zone)):
            continue
        end = ordered[index + 1] if index + 1 < len(ordered) else hi_s
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return tuple(spans)


def _instants_of_wall_time(zone: ZoneInfo, day: date, minute: int) -> set[int]:
    """The instants at which ``zone``'s wall clock reads ``day`` ``minute``, plus any jump there.

    A repeated time gives both passes; a skipped one gives the jump over it.
    """
    wall = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=zone)
    first, second = int(wall.timestamp()), int(wall.replace(fold=1).timestamp())
    if first == second:
        return {first}
    return {first, second, _jump_between(zone, min(first, second), max(first, second))}


def _jump_between(zone: ZoneInfo, before_s: int, after_s: int) -> int:
    """The first second in (before_s, after_s] at which the zone's UTC offset differs."""
    offset = datetime.fromtimestamp(before_s, zone).utcoffset()
    if datetime.fromtimestamp(after_s, zone).utcoffset() == offset:
        return after_s
    while after_s - before_s > 1:
        middle = (before_s + after_s) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset:
            before_s = middle
        else:
            after_s = middle
    return after_s


def _intersect(left: _Spans, right: _Spans) -> _Spans:
    both: list[tuple[float, float]] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start, end = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if start < end:
            both.append((start, end))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return tuple(both)
