"""The campaign page's chart data: per-minute series on one UTC minute axis, as script-safe JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from cmvoice.reporting.view import CampaignPageView

#: What the CM result codes a campaign usually sees mean.
RESULT_CODE_LABELS = {9: "not answered", 10: "finished", 11: "failed", 12: "rejected"}
#: Colour of each usual result code, in the charts and the tables alike.
RESULT_CODE_COLORS = {10: "#1f9d55", 9: "#d99a1e", 11: "#d64545", 12: "#7c4dcc"}
#: Colours for any other code, in turn.
OTHER_CODE_COLORS = ("#3182ce", "#718096", "#d53f8c", "#319795", "#975a16")
#: Colour of the calls-placed bars.
PLACED_COLOR = "#2b6cb0"
#: Widest span, in minutes, filled with zeros so every minute has a point: a campaign that
#: ran for a week has 10,080 minutes; past that only the minutes given are drawn.
MAX_FILLED_MINUTES = 7 * 24 * 60
_MINUTE_S = 60


def result_code_label(code: int) -> str:
    """``10 finished``; ``code 17`` for a code without a usual meaning."""
    meaning = RESULT_CODE_LABELS.get(code)
    return f"{code} {meaning}" if meaning else f"code {code}"


def result_code_color(code: int, others: list[int]) -> str:
    """The code's colour; ``others`` lists the unusual codes in use, so each gets its own."""
    if code in RESULT_CODE_COLORS:
        return RESULT_CODE_COLORS[code]
    position = others.index(code) if code in others else 0
    return OTHER_CODE_COLORS[position % len(OTHER_CODE_COLORS)]


def unusual_codes(codes: Iterable[int]) -> list[int]:
    """The codes in ``codes`` without a colour of their own, sorted."""
    return sorted({code for code in codes if code not in RESULT_CODE_COLORS})


def epoch_minute(moment: datetime) -> int:
    """Seconds since the epoch at the start of ``moment``'s minute; naive means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = int(moment.timestamp())
    return seconds - seconds % _MINUTE_S


def minute_axis(minutes: Iterable[int]) -> list[int]:
    """Every minute from the first to the last, or only those given when that span is huge."""
    given = sorted(set(minutes))
    if not given:
        return []
    span = (given[-1] - given[0]) // _MINUTE_S
    if span > MAX_FILLED_MINUTES:
        return given
    return list(range(given[0], given[-1] + _MINUTE_S, _MINUTE_S))


def chart_data(view: CampaignPageView) -> dict[str, Any]:
    """Both charts' data on one x axis (so their cursors line up)::

        {"x": [minute, ...],                     # seconds since the epoch, UTC
         "placed": [calls, ...],
         "outcomes": [{"code": 10, "label": "10 finished", "color": "#...", "y": [...]}, ...]}

    Minutes given twice are added up.
    """
    placed: dict[int, int] = {}
    for moment, count in view.placed_per_minute:
        minute = epoch_minute(moment)
        placed[minute] = placed.get(minute, 0) + count
    ended: dict[int, dict[int, int]] = {}
    for moment, by_code in view.outcomes_per_minute:
        into = ended.setdefault(epoch_minute(moment), {})
        for code, count in by_code.items():
            into[code] = into.get(code, 0) + count
    axis = minute_axis([*placed, *ended])
    codes = sorted({code for by_code in ended.values() for code in by_code})
    others = unusual_codes(codes)
    outcomes = [
        {
            "code": code,
            "label": result_code_label(code),
            "color": result_code_color(code, others),
            "y": [ended.get(minute, {}).get(code, 0) for minute in axis],
        }
        for code in codes
    ]
    return {
        "x": axis,
        "placed": [placed.get(minute, 0) for minute in axis],
        "placed_color": PLACED_COLOR,
        "outcomes": outcomes,
    }


def script_json(data: Any) -> str:
    """JSON for a ``<script type="application/json">`` block that no value can break out of.

    ``<``, ``>`` and ``&`` become ``\\u003c``-style escapes (JSON.parse turns them back), so
    neither ``</script>`` nor ``<!--`` can appear in the element's text.
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
