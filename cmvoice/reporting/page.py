"""render_campaign_page: one self-contained HTML page (no external URL) for a campaign."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape

from cmvoice.reporting import assets
from cmvoice.reporting.chart_data import (
    chart_data,
    result_code_color,
    result_code_label,
    script_json,
    unusual_codes,
)
from cmvoice.reporting.view import CampaignPageView

#: Phases with a colour of their own; any other is shown in grey.
KNOWN_PHASES = ("enqueuing", "running", "paused", "cancelled", "finished")
#: Ledger states in the order a call goes through them; others follow alphabetically.
STATE_ORDER = ("QUEUED", "DISPATCHING", "PLACED", "FINISHED", "FAILED", "UNKNOWN", "CANCELLED")
#: ``id`` of the element holding the chart data, read by the page's script.
DATA_ELEMENT_ID = "campaign-data"
#: The progress counters: (key, label, what it counts). Each is shown in ``#counter-<key>``.
COUNTERS = (
    ("rows-read", "Rows read", "rows of the campaign's file read so far"),
    ("enqueued", "Enqueued", "calls enqueued from those rows"),
    ("invalid", "Invalid", "rows not called: they broke a rule (see below)"),
    ("duplicates", "Duplicates", "rows not called: their number was called already"),
    ("backlog", "Backlog", "calls waiting to be dispatched"),
    ("in-flight", "In flight", "calls being placed, outcome not known yet"),
    ("done", "Done", "calls that reached a final state (expired ones aside)"),
    ("expired", "Expired", "calls not placed before the campaign's deadline"),
)


def render_campaign_page(view: CampaignPageView) -> str:
    """The campaign page as one HTML document: the API's response and ``--html`` file alike.

    Every value from ``view`` is HTML-escaped (names and rules come from users' files), chart
    data travels as escaped JSON, and uPlot plus the page's own script and CSS are inlined:
    the page loads nothing from anywhere.
    """
    title = f"{view.name} · campaign {view.campaign_id}" if view.name else view.campaign_id
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)} · cmvoice</title>",
            # An empty icon: no request for /favicon.ico, from a server or a file:// page.
            '<link rel="icon" href="data:,">',
            f"<style>{assets.inline_asset(assets.UPLOT_STYLE)}</style>",
            f"<style>{assets.inline_asset(assets.PAGE_STYLE)}</style>",
            "</head>",
            "<body>",
            _header(view),
            "<main>",
            _progress(view),
            _charts(view),
            '<div class="columns">',
            _codes_table(view),
            _states_table(view),
            "</div>",
            _errors_table(view),
            "</main>",
            "<footer>cmvoice campaign page · charts drawn by "
            f"uPlot {_e(assets.uplot_version())} (MIT license)</footer>",
            f'<script type="application/json" id="{DATA_ELEMENT_ID}">'
            f"{script_json(chart_data(view))}</script>",
            f"<script>{assets.inline_asset(assets.UPLOT_SCRIPT)}</script>",
            f"<script>{assets.inline_asset(assets.PAGE_SCRIPT)}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _e(value: object) -> str:
    """Any value as HTML text, quotes included, so it is safe in text and in attributes."""
    return escape(str(value), quote=True)


def _n(count: int) -> str:
    return f"{count:,}"


def format_utc(moment: datetime) -> str:
    """``2026-05-04 14:03 UTC``; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_duration(seconds: float) -> str:
    """``45 s``, ``3 min 20 s``, ``2 h 05 min``: rounded to what a person plans with."""
    total = max(round(seconds), 0)
    if total < 60:
        return f"{total} s"
    if total < 3600:
        minutes, rest = divmod(total, 60)
        return f"{minutes} min {rest:02d} s" if rest else f"{minutes} min"
    hours, rest = divmod(total // 60, 60)
    return f"{hours} h {rest:02d} min"


def _eta(view: CampaignPageView) -> str:
    if view.phase in ("finished", "cancelled"):
        return view.phase
    if view.eta_s is None or not math.isfinite(view.eta_s):
        return "unknown"
    return f"about {format_duration(view.eta_s)} left"


def _header(view: CampaignPageView) -> str:
    phase_class = view.phase if view.phase in KNOWN_PHASES else "other"
    name = view.name or "(no name)"
    return (
        "<header>"
        f'<h1 id="campaign-name">{_e(name)}</h1>'
        '<p class="meta">'
        f'<span class="phase phase-{phase_class}" id="campaign-phase">{_e(view.phase)}</span>'
        f' campaign <code id="campaign-id">{_e(view.campaign_id)}</code>'
        f" · {_e(view.kind)} calls"
        f" · generated {_e(format_utc(view.generated_at))}"
        "</p>"
        "</header>"
    )


def _progress(view: CampaignPageView) -> str:
    settled = view.done + view.expired
    total = max(view.enqueued, settled + view.in_flight + view.backlog)
    # Rounded down: 100 % only once every call is settled.
    percent = math.floor(100 * min(settled, total) / total) if total else 0
    segments = [
        ("done", view.done),
        ("expired", view.expired),
        ("in-flight", view.in_flight),
        ("backlog", view.backlog),
    ]
    bar = "".join(
        f'<span class="segment segment-{key}" style="width: {100 * count / total:.3f}%"'
        f' title="{_e(key.replace("-", " "))}: {_n(count)}"></span>'
        for key, count in segments
        if total and count
    )
    values = {
        "rows-read": view.rows_read,
        "enqueued": view.enqueued,
        "invalid": view.invalid,
        "duplicates": view.duplicates,
        "backlog": view.backlog,
        "in-flight": view.in_flight,
        "done": view.done,
        "expired": view.expired,
    }
    counters = "".join(
        f'<div class="counter counter-{key}" title="{_e(help_text)}"><dt>{_e(label)}</dt>'
        f'<dd id="counter-{key}">{_n(values[key])}</dd></div>'
        for key, label, help_text in COUNTERS
    )
    rate = f" · rate limit {_e(view.rate)}" if view.rate else ""
    caption = (
        f'<strong id="progress-percent">{percent}%</strong> of {_n(total)} calls settled'
        f' · <span id="progress-eta">{_e(_eta(view))}</span>{rate}'
        if total
        else "No calls enqueued yet."
    )
    return (
        '<section class="card" aria-labelledby="progress-title">'
        '<h2 id="progress-title">Progress</h2>'
        f'<div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100"'
        f' aria-valuenow="{percent}" aria-label="calls settled">{bar}</div>'
        f'<p class="caption">{caption}</p>'
        f'<dl class="counters">{counters}</dl>'
        "</section>"
    )


def _charts(view: CampaignPageView) -> str:
    has_placed = any(count for _, count in view.placed_per_minute)
    has_outcomes = any(any(by_code.values()) for _, by_code in view.outcomes_per_minute)
    placed = (
        '<div class="chart" id="chart-placed"></div>'
        if has_placed
        else '<p class="empty" id="chart-placed-empty">No calls placed yet.</p>'
    )
    outcomes = (
        '<div class="chart" id="chart-outcomes"></div>'
        if has_outcomes
        else '<p class="empty" id="chart-outcomes-empty">No call has ended yet.</p>'
    )
    return (
        '<section class="card" aria-labelledby="charts-title">'
        '<h2 id="charts-title">Calls placed per minute <small>(UTC)</small></h2>'
        f"{placed}"
        "<h2>Outcomes per minute, by result code <small>(UTC)</small></h2>"
        f"{outcomes}"
        '<noscript><p class="empty">The charts need JavaScript.</p></noscript>'
        "</section>"
    )


def _table(caption_id: str, title: str, headers: Iterable[str], rows: list[str], empty: str) -> str:
    # The first column names the row; the others hold numbers, aligned right.
    head = "".join(
        f'<th scope="col" class="{"num" if index else "name"}">{_e(header)}</th>'
        for index, header in enumerate(headers)
    )
    body = (
        f'<table id="{caption_id}-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else f'<p class="empty" id="{caption_id}-empty">{_e(empty)}</p>'
    )
    return (
        f'<section class="card" aria-labelledby="{caption_id}-title">'
        f'<h2 id="{caption_id}-title">{_e(title)}</h2>{body}</section>'
    )


def _share(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}%" if total else ""


def _codes_table(view: CampaignPageView) -> str:
    total = sum(view.result_codes.values())
    others = unusual_codes(view.result_codes)
    rows = [
        f'<tr data-code="{_e(code)}"><td><span class="swatch"'
        f' style="background: {_e(result_code_color(code, others))}"></span>'
        f"{_e(result_code_label(code))}</td>"
        f'<td class="num">{_n(count)}</td><td class="num">{_share(count, total)}</td></tr>'
        for code, count in sorted(view.result_codes.items())
    ]
    headers = ("Result code", "Calls", "Share")
    return _table("codes", "Outcomes by result code", headers, rows, "No call has ended yet.")


def _state_key(item: tuple[str, int]) -> tuple[int, str]:
    state = item[0]
    order = STATE_ORDER.index(state) if state in STATE_ORDER else len(STATE_ORDER)
    return order, state


def _states_table(view: CampaignPageView) -> str:
    rows = [
        f'<tr data-state="{_e(state)}"><td>{_e(state)}</td><td class="num">{_n(count)}</td></tr>'
        for state, count in sorted(view.states.items(), key=_state_key)
    ]
    return _table("states", "Calls by ledger state", ("State", "Calls"), rows, "No calls yet.")


def _errors_table(view: CampaignPageView) -> str:
    ordered = sorted(view.errors_by_rule.items(), key=lambda item: (-item[1], item[0]))
    rows = [
        f'<tr><td class="rule">{_e(rule)}</td><td class="num">{_n(count)}</td></tr>'
        for rule, count in ordered
    ]
    headers = ("Rule", "Rows")
    return _table("errors", "Rows not called, by rule", headers, rows, "No row rejected so far.")
