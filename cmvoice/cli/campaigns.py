"""``cmvoice campaign``: start, watch, pause, resume, cancel, report and list bulk calls."""

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cmvoice.cli.rendering import (
    campaign_list_table,
    campaign_status_table,
    console,
    err_console,
    print_json,
)

if TYPE_CHECKING:
    from cmvoice.campaigns.store import CampaignStore

#: What ``--out`` takes for standard output.
STDOUT = "-"

campaign_app = typer.Typer(
    help="Bulk calls from a file: start, watch, pause, resume, cancel, report.",
    no_args_is_help=True,
)

CampaignId = Annotated[str, typer.Argument(help="The campaign id `campaign start` printed.")]


def _campaign_store() -> "CampaignStore":
    from cmvoice.campaigns.store import CampaignStore
    from cmvoice.runtime import get_runtime

    return CampaignStore(get_runtime())


@campaign_app.command("start")
def campaign_start(
    file: Annotated[Path, typer.Argument(help="CSV (first row: field names) or JSON lines.")],
    kind: Annotated[
        str | None, typer.Option("--kind", "-k", help="notification, otp or dtmf.")
    ] = None,
    template: Annotated[
        Path | None,
        typer.Option(help="JSON object of fields every row shares; a row's own cells win."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="A name to know it by (default: FILE).")] = None,
    rate: Annotated[
        str | None,
        typer.Option(help="This campaign's own limit under the account's: 5/s, 300/m, 1/2s."),
    ] = None,
    errors: Annotated[
        Path | None,
        typer.Option(help="CSV of invalid and duplicate rows (default: ./campaign-ID-errors.csv)."),
    ] = None,
    allow_duplicates: Annotated[
        bool,
        typer.Option(
            "--allow-duplicates", help="Dial every row, also a number the campaign already calls."
        ),
    ] = False,
    window: Annotated[
        str | None,
        typer.Option(
            help="Calling window in each callee's local time, e.g. 09:00-20:00 "
            "(default: CMVOICE_CALLING_WINDOW)."
        ),
    ] = None,
    days: Annotated[
        str | None,
        typer.Option(
            help="Calling days, e.g. mon-fri or mon,wed,fri (default: CMVOICE_CALLING_DAYS)."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="Deadline (ISO 8601, e.g. 2026-12-24T18:00Z): calls not placed by then "
            "end EXPIRED."
        ),
    ] = None,
    valid_for: Annotated[
        str | None,
        typer.Option(help="Deadline as a duration from now (8h, 90m) instead of --until."),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume", metavar="ID", help="Continue an interrupted start of campaign ID."
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Rows per committed batch.", hidden=True)
    ] = None,
) -> None:
    """Validate FILE row by row and enqueue its calls; prints the campaign id first."""
    import signal
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from cmvoice.campaigns.enqueue import DEFAULT_BATCH_ROWS, CampaignEnqueuer, EnqueueProgress
    from cmvoice.campaigns.model import EnqueueState
    from cmvoice.rules.deadlines import deadline_ms

    store = _campaign_store()
    if resume is None:
        if kind is None:
            raise typer.BadParameter("required for a new campaign", param_hint="--kind")
        try:
            until_ms = deadline_ms(until, valid_for, store.ledger.server_time_ms())
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        campaign = store.create(
            kind,
            file,
            template=template,
            name=name,
            rate=rate,
            allow_duplicates=allow_duplicates,
            errors_path=errors,
            window=window,
            days=days,
            until_ms=until_ms,
        )
    else:
        fixed = {
            "--template": template,
            "--name": name,
            "--rate": rate,
            "--window": window,
            "--days": days,
            "--until": until,
            "--valid-for": valid_for,
        }
        given = [option for option, value in fixed.items() if value is not None]
        if allow_duplicates:
            given.append("--allow-duplicates")
        if given:
            raise typer.BadParameter(
                f"{', '.join(given)}: fixed when the campaign started; --resume takes FILE "
                "(the same file) and optionally --errors",
                param_hint="--resume",
            )
        campaign = store.get(resume)
        if kind is not None and kind != campaign.kind:
            raise typer.BadParameter(
                f"campaign {resume} is a {campaign.kind} campaign", param_hint="--kind"
            )
        if errors is not None:
            store.set_errors_path(resume, errors)
            campaign = store.get(resume)
    batch_rows = DEFAULT_BATCH_ROWS if batch_size is None else batch_size
    enqueuer = CampaignEnqueuer(store, campaign, path=file, batch_rows=batch_rows)
    cid = campaign.campaign_id
    if campaign.enqueue_state is EnqueueState.COMPLETE:
        print(cid)
        err_console().print(f"campaign {cid} is fully enqueued already; nothing to resume")
        return
    # The id alone on standard output, at once: scripts read it; messages go to stderr.
    print(cid, flush=True)
    verb = "resuming" if resume else "started"
    err_console().print(
        f"campaign {cid} {verb}: {campaign.kind} calls from {campaign.file}"
        + (f", at most {campaign.rate}" if campaign.rate else ""),
        markup=False,
        highlight=False,
    )

    # First Ctrl-C: finish the batch in hand and stop cleanly; a second one stops at once.
    stop_requested: list[bool] = []

    def on_sigint(signum: int, frame: object) -> None:
        if stop_requested:
            raise KeyboardInterrupt
        stop_requested.append(True)

    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    resume_hint = f"continue with: cmvoice campaign start {file} --resume {cid}"
    try:
        with Progress(
            TextColumn("[bold]enqueue[/bold]"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[rows]:>9,} rows, {task.fields[speed]:>6,.0f} rows/s"),
            TimeRemainingColumn(),
            console=err_console(),
            transient=False,
        ) as bar:
            task = bar.add_task(
                "enqueue",
                total=max(enqueuer.size_bytes, 1),
                completed=campaign.checkpoint_offset,
                rows=campaign.rows_read,
                speed=0.0,
            )
            started_rows = campaign.rows_read
            started_at = time.monotonic()

            def on_progress(step: EnqueueProgress) -> None:
                speed = (step.rows_read - started_rows) / max(time.monotonic() - started_at, 1e-6)
                bar.update(task, completed=step.position_bytes, rows=step.rows_read, speed=speed)

            report = enqueuer.run(should_stop=lambda: bool(stop_requested), on_progress=on_progress)
    except KeyboardInterrupt:
        err_console().print(f"interrupted; {resume_hint}", markup=False)
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    err_console().print(
        f"campaign {cid}: {report.enqueued:,} calls enqueued from {report.rows_read:,} rows "
        f"({report.invalid:,} invalid, {report.duplicates:,} duplicates) "
        f"in {report.elapsed_s:.1f} s",
        highlight=False,
    )
    if report.errors_path:
        err_console().print(f"rows not called and why: {report.errors_path}", markup=False)
    if report.state is not EnqueueState.COMPLETE:
        err_console().print(f"stopped ({report.stopped_because}); {resume_hint}", markup=False)
        raise typer.Exit(130 if stop_requested else 1)
    err_console().print(f"watch it with: cmvoice campaign status {cid} --watch", markup=False)


@campaign_app.command("status")
def campaign_status(
    campaign_id: CampaignId,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until it ends.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Calls by state and result code, attempts, calls per minute and the time left."""
    import time

    store = _campaign_store()
    if as_json:
        print_json(store.progress(campaign_id).to_dict())
        return
    if not watch:
        console().print(campaign_status_table(store.progress(campaign_id).to_dict()))
        return
    from rich.live import Live

    live_view = Live(console=console(), auto_refresh=False)
    with contextlib.suppress(KeyboardInterrupt), live_view as live:
        while True:
            progress = store.progress(campaign_id)
            live.update(campaign_status_table(progress.to_dict()), refresh=True)
            if progress.phase in ("finished", "cancelled"):
                break
            time.sleep(max(interval, 0.2))


@campaign_app.command("pause")
def campaign_pause(campaign_id: CampaignId) -> None:
    """Release none of its calls until `resume` (calls already ringing finish normally)."""
    from cmvoice.campaigns import control

    control.pause(_campaign_store(), campaign_id)
    err_console().print(f"campaign {campaign_id} paused: no call of it is sent until resumed")


@campaign_app.command("resume")
def campaign_resume(campaign_id: CampaignId) -> None:
    """Release its calls again, from where the pause left its backlog."""
    from cmvoice.campaigns import control

    waiting = control.resume(_campaign_store(), campaign_id)
    err_console().print(f"campaign {campaign_id} running again; {waiting:,} calls in its backlog")


@campaign_app.command("cancel")
def campaign_cancel(campaign_id: CampaignId) -> None:
    """Cancel for good: queued calls become CANCELLED, never sent; placed calls finish."""
    from cmvoice.campaigns import control

    cancelled, _ = control.cancel(_campaign_store(), campaign_id)
    err_console().print(
        f"campaign {campaign_id} cancelled; {cancelled:,} queued calls will not be sent"
    )


@campaign_app.command("report")
def campaign_report(
    campaign_id: CampaignId,
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="The CSV file to write; - for standard output."),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", help="Also (or instead) write the campaign page: one self-contained file."
        ),
    ] = None,
    unmask: Annotated[
        bool,
        typer.Option("--unmask", help="Full phone numbers (personal data!) instead of masked."),
    ] = False,
) -> None:
    """One CSV row per row of the file (state, attempts, result code, digits, times, error),
    and/or the campaign page with its charts as an HTML file (--html)."""
    store = _campaign_store()
    store.get(campaign_id)
    if out is None and html is None:
        raise typer.BadParameter(
            "give --out FILE.csv, --html FILE.html, or both", param_hint="--out"
        )
    if html is not None:
        _write_page(store, campaign_id, html)
    if out is not None:
        _write_csv_report(store, campaign_id, out, unmask=unmask)


def _write_page(store: "CampaignStore", campaign_id: str, path: Path) -> None:
    from cmvoice.reporting.from_redis import campaign_page_view
    from cmvoice.reporting.page import render_campaign_page

    page = render_campaign_page(campaign_page_view(store, campaign_id))
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot write {path}: {exc.strerror}", param_hint="--html"
        ) from None
    err_console().print(f"campaign page written to {path} (open it in a browser)", markup=False)


def _write_csv_report(store: "CampaignStore", campaign_id: str, out: str, *, unmask: bool) -> None:
    from cmvoice.campaigns.report import write_report

    if out == STDOUT:
        count = write_report(store, campaign_id, sys.stdout, unmask=unmask)
        sys.stdout.flush()
        where = "standard output"
    else:
        try:
            with Path(out).open("w", newline="", encoding="utf-8") as file:
                count = write_report(store, campaign_id, file, unmask=unmask)
        except OSError as exc:
            message = f"cannot write {out}: {exc.strerror}"
            raise typer.BadParameter(message, param_hint="--out") from None
        where = out
    err_console().print(f"{count:,} rows written to {where}", markup=False)
    if unmask:
        err_console().print(
            "the report holds full phone numbers: keep it safe, delete it after use"
        )


@campaign_app.command("list")
def campaign_list() -> None:
    """Every campaign still in Redis, newest first (an id starts with its UTC start date)."""
    console().print(campaign_list_table(_campaign_store().list_campaigns()))
