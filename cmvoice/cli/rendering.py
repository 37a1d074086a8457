"""What the ``cmvoice`` command shows: consoles, JSON, tables, durations and field errors."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from cmvoice.campaigns.model import Campaign
    from cmvoice.errors import InvalidInstruction

# rich is imported when something is first shown through it, not with the command: `cmvoice
# send` prints a plain id, and rich's import is a sixth of its start-up.


@functools.cache
def console() -> Console:
    """Tables and other output meant for people."""
    from rich.console import Console

    return Console()


@functools.cache
def err_console() -> Console:
    """Messages, progress and errors: standard error, so standard output stays for data."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def escape(text: str) -> str:
    """``text`` shown as it is, never read as rich markup."""
    from rich.markup import escape as escape_markup

    return escape_markup(text)


def _table(**options: Any) -> Table:
    from rich.table import Table

    return Table(**options)


#: Columns of the attempts of one call, in ``call status``.
ATTEMPT_COLUMNS = ("instruction_id", "state", "result_code", "finished_on", "last_error")


def print_json(data: object) -> None:
    """JSON for other programs on standard output: plain ``print``, never rich markup."""
    print(json.dumps(data, indent=2, ensure_ascii=False))


def print_field_errors(
    exc: InvalidInstruction,
    label: str = "instruction",
    *,
    hints: Mapping[str, str] | None = None,
) -> None:
    """Each broken rule on its own line; ``hints`` (field -> advice) follow their field's line."""
    err_console().print(f"[red]{label}: invalid {exc.kind} instruction[/red]")
    for error in exc.errors:
        hint = (hints or {}).get(error.field)
        # Values come from the user's input: print them as text, never as rich markup.
        err_console().print(f"  {error}" + (f"; {hint}" if hint else ""), markup=False)


def duration(seconds: float | None) -> str:
    """``1h02m03s``, ``4m05s``, or ``-`` when unknown."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def record_table(view: Mapping[str, Any]) -> Table:
    """One call's fields, a name and a value per line."""
    table = _table(show_header=False, box=None)
    for name, value in view.items():
        table.add_row(f"[bold]{name}[/bold]", escape(str(value)))
    return table


def attempts_table(chain: Iterable[Mapping[str, Any]]) -> Table:
    """The attempts of one call (the first, then each redial), numbered from 1."""
    table = _table(title="attempts")
    table.add_column("#")
    for column in ATTEMPT_COLUMNS:
        table.add_column(column)
    for number, attempt in enumerate(chain, start=1):
        table.add_row(
            str(number), *(escape(str(attempt.get(name, ""))) for name in ATTEMPT_COLUMNS)
        )
    return table


def campaign_status_table(data: Mapping[str, Any]) -> Table:
    """``campaign status``: the campaign's ``CampaignProgress.to_dict()`` for a person."""
    table = _table(show_header=False, box=None, title=f"campaign {data['campaign_id']}")
    table.add_row("name", escape(str(data["name"])))
    table.add_row("phase", f"[bold]{data['phase']}[/bold] ({data['kind']})")
    rows = (
        f"{data['rows_read']:,} read, {data['enqueued']:,} enqueued, "
        f"{data['invalid']:,} invalid, {data['duplicates']:,} duplicates"
    )
    table.add_row("rows", rows)
    if data["rate"]:
        table.add_row("rate limit", str(data["rate"]))
    window = data.get("window") or "CMVOICE_CALLING_WINDOW"
    days = data.get("days") or "CMVOICE_CALLING_DAYS"
    table.add_row("calling window", escape(f"{window} {days}, callee-local"))
    if data.get("until"):
        expired = data.get("expired", 0)
        table.add_row("deadline", escape(f"{data['until']} ({expired:,} expired)"))
    by_rule = sorted(data.get("refused_by_rule", {}).items())
    refused = ", ".join(f"{rule} {count:,}" for rule, count in by_rule)
    table.add_row("refused by rule", escape(refused or "none"))
    states = ", ".join(f"{state} {count:,}" for state, count in sorted(data["states"].items()))
    table.add_row("calls", states or "none yet")
    by_code = sorted(data["result_codes"].items(), key=lambda item: int(item[0]))
    codes = ", ".join(f"{code}: {count:,}" for code, count in by_code)
    table.add_row("result codes", codes or "none yet")
    table.add_row("attempts", f"{data['attempts']:,} ({data['redials']:,} redials)")
    backlog = f"{data['backlog']:,}"
    if data["backlog_due_later"]:
        backlog += f" ({data['backlog_due_later']:,} due later: redials, retries, windows)"
    table.add_row("backlog", backlog)
    table.add_row("in flight", f"{data['in_flight']:,}")
    table.add_row("done", f"{data['done']:,}")
    table.add_row("calls/minute", f"{data['calls_per_minute']:,.1f}")
    table.add_row("ETA", duration(data["eta_s"]) if data["active"] else "done")
    table.add_row("updated at", str(data["updated_at"]))
    return table


def campaign_list_table(campaigns: Iterable[Campaign]) -> Table:
    """``campaign list``: one line per campaign, its rows counted as ``campaign status`` does."""
    table = _table(box=None, header_style="bold")
    # The id is what people copy: it never wraps or shrinks; the name gives way first.
    table.add_column("id", no_wrap=True, min_width=17)
    table.add_column("name", overflow="ellipsis", no_wrap=True, max_width=30)
    for column in ("kind", "status", "enqueued", "invalid", "duplicates"):
        table.add_column(column, no_wrap=True)
    for campaign in campaigns:
        status = campaign.status.value
        if campaign.enqueue_state.value != "complete":
            status += f", {campaign.enqueue_state.value}"
        table.add_row(
            campaign.campaign_id,
            escape(campaign.name),
            campaign.kind,
            status,
            f"{campaign.enqueued:,}",
            f"{campaign.invalid:,}",
            f"{campaign.duplicates:,}",
        )
    return table
