"""The ``cmvoice`` command."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import redis
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cmvoice.config import DEFAULT_RECEIVER_PORT, Settings, get_settings
from cmvoice.dev import (
    DEFAULT_DEMO_TIMEOUT_S,
    DEFAULT_FLOWER_PORT,
    DEMO_TIME_SCALE,
    DevOptions,
    run_dev,
)
from cmvoice.embedded_redis import EmbeddedRedis, is_answering
from cmvoice.errors import CmVoiceError, InvalidInstruction
from cmvoice.instructions import MODELS, infer_kind, parse_instruction
from cmvoice.privacy import redact_url
from cmvoice.producer import enqueue
from cmvoice.records import attempt_chain, describe_record
from cmvoice.runtime import get_runtime
from cmvoice.simulator.config import DEFAULT_PORT as DEFAULT_SIMULATOR_PORT
from cmvoice.worker import ALL_QUEUES
from cmvoice.worker import app as celery_app

#: Worker threads: dispatch mostly waits on CM and on the rate limit, so threads are cheap.
DEFAULT_WORKER_CONCURRENCY = 32

app = typer.Typer(
    name="cmvoice",
    help="A voice-call job queue for CM.com's Voice API (Notification, OTP, Request-DTMF).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


@app.callback()
def _root() -> None:
    """A voice-call job queue for CM.com's Voice API (Notification, OTP, Request-DTMF)."""


err_console = Console(stderr=True, soft_wrap=True)

KindOption = Annotated[
    str | None,
    typer.Option(
        "--kind",
        "-k",
        help="notification, otp or dtmf (inferred from the fields when omitted).",
    ),
]


def _read_json(source: str) -> Any:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{source} is not JSON: {exc}", param_hint="FILE") from None


@app.command()
def validate(
    file: Annotated[
        str, typer.Argument(help="A JSON instruction (or a list of them); - for stdin.")
    ],
    kind: KindOption = None,
) -> None:
    """Check instructions against CM's rules and print the exact payload CM would receive."""
    data = _read_json(file)
    items = data if isinstance(data, list) else [data]
    failed = False
    payloads = []
    for number, item in enumerate(items, start=1):
        label = f"instruction {number}" if len(items) > 1 else "instruction"
        if not isinstance(item, dict):
            err_console.print(f"[red]{label}: must be a JSON object[/red]")
            failed = True
            continue
        item_kind = kind or infer_kind(item)
        if item_kind not in MODELS:
            raise typer.BadParameter(f"must be one of {', '.join(MODELS)}", param_hint="--kind")
        try:
            payloads.append(parse_instruction(item_kind, item).to_payload())
        except InvalidInstruction as exc:
            failed = True
            _print_field_errors(exc, label)
    if payloads:
        shown = payloads if isinstance(data, list) else payloads[0]
        # Plain print, not rich: the output is JSON meant for other programs.
        print(json.dumps(shown, indent=2, ensure_ascii=False))
    raise typer.Exit(1 if failed else 0)


call_app = typer.Typer(help="Look at single calls in the ledger.", no_args_is_help=True)
app.add_typer(call_app, name="call")


@contextlib.contextmanager
def _broker_for(command: str) -> Iterator[Settings]:
    """Settings for a command that needs the broker: starts the embedded Redis when none is set."""
    settings = get_settings()
    if not settings.uses_embedded_redis or is_answering(settings.effective_broker_url):
        yield settings
        return
    server = EmbeddedRedis(
        port=settings.embedded_redis_port, data_dir=settings.data_dir / "redis", persistent=True
    )
    err_console.print(
        f"{command}: no CMVOICE_BROKER_URL set; starting an embedded Redis on {server.url} "
        f"(data in {server.data_dir})"
    )
    with server:
        yield settings


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Threads; each runs one dispatch at a time.")
    ] = DEFAULT_WORKER_CONCURRENCY,
    queues: Annotated[
        str | None,
        typer.Option(
            "--queues",
            "-Q",
            help="Comma-separated queues to consume (default: cmvoice's own, and "
            "CMVOICE_RESULT_QUEUE when --include is given).",
        ),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include",
            "-I",
            help="A module of your application to import (result tasks, @on_result hooks); "
            "repeatable. The worker then also runs your result tasks.",
        ),
    ] = None,
    beat: Annotated[
        bool, typer.Option("--beat", "-B", help="Also run the reconciler's periodic schedule.")
    ] = False,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "info",
) -> None:
    """Start a Celery worker (thread pool). Other options are passed on to Celery."""
    with _broker_for("worker") as settings:
        # Fail now, naming the variable, rather than in the first task.
        get_runtime().product_token  # noqa: B018
        if queues is None:
            # Your result tasks have a queue of their own: consumed only where they can run.
            wanted = [*ALL_QUEUES, settings.result_queue] if include else list(ALL_QUEUES)
            queues = ",".join(dict.fromkeys(wanted))
        argv = ["worker", "--pool", "threads", "--concurrency", str(concurrency)]
        argv += ["--queues", queues, "--loglevel", loglevel]
        if include:
            argv += ["--include", ",".join(include)]
        if beat:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            argv += ["--beat", "--schedule", str(settings.data_dir / "celerybeat-schedule")]
        celery_app.worker_main([*argv, *ctx.args])


@app.command()
def send(
    kind: Annotated[str, typer.Argument(help="notification, otp or dtmf")],
    callee: Annotated[str, typer.Option(help="The number to call, international format.")],
    caller: Annotated[str, typer.Option(help="The number shown as the caller.")],
    prompt: Annotated[str | None, typer.Option(help="Prompt (notification, dtmf).")] = None,
    code: Annotated[str | None, typer.Option(help="OTP code (otp).")] = None,
    min_digits: Annotated[int | None, typer.Option(help="dtmf: fewest digits.")] = None,
    max_digits: Annotated[int | None, typer.Option(help="dtmf: most digits.")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="dtmf: attempts.")] = None,
    instruction_id: Annotated[str | None, typer.Option(help="Your own id (default: new).")] = None,
    field: Annotated[
        list[str] | None,
        typer.Option("--field", "-f", help="Any other field as NAME=VALUE (JSON values ok)."),
    ] = None,
) -> None:
    """Enqueue one call and print its instruction id."""
    data: dict[str, Any] = {"callee": callee, "caller": caller}
    named = {
        "prompt": prompt,
        "code": code,
        "min-digits": min_digits,
        "max-digits": max_digits,
        "max-attempts": max_attempts,
        "instruction-id": instruction_id,
    }
    data.update({name: value for name, value in named.items() if value is not None})
    for item in field or []:
        name, sep, raw = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--field")
        try:
            data[name] = json.loads(raw)
        except json.JSONDecodeError:
            data[name] = raw
    try:
        ticket = enqueue(data, kind=kind)
    except InvalidInstruction as exc:
        _print_field_errors(exc)
        raise typer.Exit(1) from None
    if not ticket.created:
        err_console.print(f"instruction {ticket.instruction_id} was already queued")
    print(ticket.instruction_id)


def _print_field_errors(exc: InvalidInstruction, label: str = "instruction") -> None:
    err_console.print(f"[red]{label}: invalid {exc.kind} instruction[/red]")
    for error in exc.errors:
        # Values come from the user's input: print them as text, never as rich markup.
        err_console.print(f"  {error.field}: {error.rule} (got {error.value})", markup=False)


@call_app.command("status")
def call_status(
    instruction_id: Annotated[str, typer.Argument(help="The instruction id enqueue printed.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a call's ledger record and all its attempts (numbers masked, never the OTP code)."""
    ledger = get_runtime().ledger
    record = ledger.get(instruction_id)
    if record is None:
        err_console.print(f"no call {instruction_id} in the ledger (unknown, or expired)")
        raise typer.Exit(1)
    view = describe_record(record)
    chain = [describe_record(attempt) for attempt in attempt_chain(ledger, instruction_id)]
    if as_json:
        print(json.dumps({**view, "attempts": chain}, indent=2))
        return
    table = Table(show_header=False, box=None)
    for name, value in view.items():
        table.add_row(f"[bold]{name}[/bold]", escape(str(value)))
    console.print(table)
    if len(chain) > 1:
        attempts = Table(title="attempts")
        for column in ("#", "instruction_id", "state", "result_code", "finished_on", "last_error"):
            attempts.add_column(column)
        for number, attempt in enumerate(chain, start=1):
            attempts.add_row(
                str(number),
                *(
                    escape(str(attempt.get(name, "")))
                    for name in ("instruction_id", "state", "result_code", "finished_on")
                ),
                escape(str(attempt.get("last_error", ""))),
            )
        console.print(attempts)


@app.command()
def receiver(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_RECEIVER_PORT,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve CM's callbacks (POST /callbacks/cm/<id>/<sig>), /healthz and /metrics."""
    import uvicorn

    with _broker_for("receiver"):
        uvicorn.run(
            "cmvoice.receiver:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=False,
        )


@app.command()
def simulator(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8091,
    time_scale: Annotated[
        float, typer.Option(help="Factor on simulated call durations (0.001: a 60 s ring = 60 ms).")
    ] = 1.0,
    token: Annotated[
        list[str] | None,
        typer.Option(
            help="An accepted product token (repeatable). "
            "Default: the dev token 00000000-0000-0000-0000-000000000000."
        ),
    ] = None,
    prefix: Annotated[str, typer.Option(help="Path prefix of the apps.")] = "/voiceapi/v2",
    callback_url: Annotated[
        str | None, typer.Option(help="Callback URL for instructions that have none.")
    ] = None,
    fail_429: Annotated[float, typer.Option(help="Share of POSTs answered 429.")] = 0.0,
    retry_after_s: Annotated[int, typer.Option(help="Retry-After of a 429, in seconds.")] = 1,
    fail_500: Annotated[float, typer.Option(help="Share of POSTs answered 500.")] = 0.0,
    fail_503: Annotated[float, typer.Option(help="Share of POSTs answered 503.")] = 0.0,
    timeout_rate: Annotated[
        float, typer.Option(help="Share of POSTs held past the client's read timeout.")
    ] = 0.0,
    hold_s: Annotated[float, typer.Option(help="Seconds a timed-out POST is held.")] = 30.0,
    timeout_places_call: Annotated[
        float, typer.Option(help="Chance that a timed-out POST still places its call.")
    ] = 0.5,
    places_call_on_500: Annotated[
        bool, typer.Option(help="A 500 may place its call too (chance: --timeout-places-call).")
    ] = False,
    latency_ms: Annotated[float, typer.Option(help="Milliseconds added to every POST.")] = 0.0,
    drop_callbacks: Annotated[float, typer.Option(help="Share of callbacks never sent.")] = 0.0,
    duplicate_callbacks: Annotated[
        float, typer.Option(help="Share of callbacks sent twice.")
    ] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible faults.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the CM simulator: a local Voice API that places simulated calls and posts callbacks."""
    import logging

    import uvicorn
    from pydantic import ValidationError

    from cmvoice.simulator import Faults, SimulatorConfig, create_app

    try:
        faults = Faults(
            fail_429=fail_429,
            retry_after_s=retry_after_s,
            fail_500=fail_500,
            fail_503=fail_503,
            timeout_rate=timeout_rate,
            hold_s=hold_s,
            timeout_places_call=timeout_places_call,
            places_call_on_500=places_call_on_500,
            latency_ms=latency_ms,
            drop_callbacks=drop_callbacks,
            duplicate_callbacks=duplicate_callbacks,
        )
        config = SimulatorConfig(
            tokens=tuple(token or ()),
            time_scale=time_scale,
            prefix=prefix,
            default_callback_url=callback_url,
            faults=faults,
            seed=seed,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'faults'}: "
            f"{error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors(include_url=False)
        )
        raise typer.BadParameter(problems) from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter("must be debug, info, warning or error", param_hint="--log-level")
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    tokens = "the dev token" if not token else f"{len(config.tokens)} token(s) (hidden)"
    err_console.print(
        f"CM simulator on http://{host}:{port}{config.prefix}/{{Notification,OTP,DTMF}}, "
        f"accepting {tokens}, time scale {time_scale:g}; control API at /_sim"
    )
    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level.lower())


@app.command()
def dev(
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Once everything is up, send one call of each app (and one nobody answers), "
            "print their outcomes, stop everything and exit.",
        ),
    ] = False,
    receiver_port: Annotated[
        int, typer.Option(help="Port of the callback receiver.")
    ] = DEFAULT_RECEIVER_PORT,
    simulator_port: Annotated[
        int, typer.Option(help="Port of the CM simulator.")
    ] = DEFAULT_SIMULATOR_PORT,
    flower_port: Annotated[int, typer.Option(help="Port of Flower.")] = DEFAULT_FLOWER_PORT,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Data of the embedded Redis and beat (default: CMVOICE_DATA_DIR)."),
    ] = None,
    time_scale: Annotated[
        float | None,
        typer.Option(help="Simulated time factor (default: 0.05 with --demo, else 1: real time)."),
    ] = None,
    demo_timeout: Annotated[
        float, typer.Option(help="Seconds the demo waits for the outcomes.")
    ] = DEFAULT_DEMO_TIMEOUT_S,
    include: Annotated[
        list[str] | None,
        typer.Option(
            help="A module the worker imports (repeatable): your result tasks "
            "(CMVOICE_RESULT_TASKS) then run here, and the worker consumes their queue.",
        ),
    ] = None,
) -> None:
    """Run everything on this machine: Redis, the simulator, the receiver, a worker, Flower."""
    settings = get_settings()
    options = DevOptions(
        receiver_port=receiver_port,
        simulator_port=simulator_port,
        flower_port=flower_port,
        data_dir=data_dir or settings.data_dir,
        time_scale=time_scale if time_scale is not None else (DEMO_TIME_SCALE if demo else 1.0),
        demo=demo,
        demo_timeout_s=demo_timeout,
        includes=tuple(include or ()),
    )
    raise typer.Exit(run_dev(settings, options, console))


campaign_app = typer.Typer(
    help="Bulk calls from a file: start, watch, pause, resume, cancel, report.",
    no_args_is_help=True,
)
app.add_typer(campaign_app, name="campaign")

CampaignId = Annotated[str, typer.Argument(help="The campaign id `campaign start` printed.")]


def _campaign_store() -> Any:
    from cmvoice.campaigns.store import CampaignStore

    return CampaignStore(get_runtime())


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


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
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume", metavar="ID", help="Continue an interrupted start of campaign ID."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Rows per committed batch.", hidden=True)] = 1000,
) -> None:
    """Validate FILE row by row and enqueue its calls; prints the campaign id first."""
    import signal
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from cmvoice.campaigns.enqueue import CampaignEnqueuer, EnqueueProgress
    from cmvoice.campaigns.model import EnqueueState

    store = _campaign_store()
    if resume is None:
        if kind is None:
            raise typer.BadParameter("required for a new campaign", param_hint="--kind")
        campaign = store.create(
            kind,
            file,
            template=template,
            name=name,
            rate=rate,
            allow_duplicates=allow_duplicates,
            errors_path=errors,
        )
    else:
        fixed = {"--template": template, "--name": name, "--rate": rate}
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
    enqueuer = CampaignEnqueuer(store, campaign, path=file, batch_rows=batch_size)
    cid = campaign.campaign_id
    if campaign.enqueue_state is EnqueueState.COMPLETE:
        print(cid)
        err_console.print(f"campaign {cid} is fully enqueued already; nothing to resume")
        return
    # The id alone on standard output, at once: scripts read it; messages go to stderr.
    print(cid, flush=True)
    verb = "resuming" if resume else "started"
    err_console.print(
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
            console=err_console,
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
        err_console.print(f"interrupted; {resume_hint}", markup=False)
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    err_console.print(
        f"campaign {cid}: {report.enqueued:,} calls enqueued from {report.rows_read:,} rows "
        f"({report.invalid:,} invalid, {report.duplicates:,} duplicates) "
        f"in {report.elapsed_s:.1f} s",
        highlight=False,
    )
    if report.errors_path:
        err_console.print(f"rows not called and why: {report.errors_path}", markup=False)
    if report.state is not EnqueueState.COMPLETE:
        err_console.print(f"stopped ({report.stopped_because}); {resume_hint}", markup=False)
        raise typer.Exit(130 if stop_requested else 1)
    err_console.print(f"watch it with: cmvoice campaign status {cid} --watch", markup=False)


def _status_table(progress: Any) -> Table:
    data = progress.to_dict()
    table = Table(show_header=False, box=None, title=f"campaign {data['campaign_id']}")
    table.add_row("name", escape(str(data["name"])))
    table.add_row("phase", f"[bold]{data['phase']}[/bold] ({data['kind']})")
    rows = (
        f"{data['rows_read']:,} read, {data['enqueued']:,} enqueued, "
        f"{data['invalid']:,} invalid, {data['duplicates']:,} duplicates"
    )
    table.add_row("rows", rows)
    if data["rate"]:
        table.add_row("rate limit", str(data["rate"]))
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
    table.add_row("ETA", _duration(data["eta_s"]) if data["active"] else "done")
    table.add_row("updated at", data["updated_at"])
    return table


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
        print(json.dumps(store.progress(campaign_id).to_dict(), indent=2))
        return
    if not watch:
        console.print(_status_table(store.progress(campaign_id)))
        return
    from rich.live import Live

    with contextlib.suppress(KeyboardInterrupt), Live(console=console, auto_refresh=False) as live:
        while True:
            progress = store.progress(campaign_id)
            live.update(_status_table(progress), refresh=True)
            if progress.phase in ("finished", "cancelled"):
                break
            time.sleep(max(interval, 0.2))


@campaign_app.command("pause")
def campaign_pause(campaign_id: CampaignId) -> None:
    """Send none of its calls until `resume` (calls already ringing finish normally)."""
    from cmvoice.campaigns import control

    control.pause(_campaign_store(), campaign_id)
    err_console.print(f"campaign {campaign_id} paused: no call of it is sent until resumed")


@campaign_app.command("resume")
def campaign_resume(campaign_id: CampaignId) -> None:
    """Release its calls again, from where the pause left its backlog."""
    from cmvoice.campaigns import control

    waiting = control.resume(_campaign_store(), campaign_id)
    err_console.print(f"campaign {campaign_id} running again; {waiting:,} calls in its backlog")


@campaign_app.command("cancel")
def campaign_cancel(campaign_id: CampaignId) -> None:
    """Cancel for good: queued calls become CANCELLED, never sent; placed calls finish."""
    from cmvoice.campaigns import control

    cancelled, _ = control.cancel(_campaign_store(), campaign_id)
    err_console.print(
        f"campaign {campaign_id} cancelled; {cancelled:,} queued calls will not be sent"
    )


@campaign_app.command("report")
def campaign_report(
    campaign_id: CampaignId,
    out: Annotated[Path, typer.Option("--out", "-o", help="The CSV file to write.")],
    unmask: Annotated[
        bool,
        typer.Option("--unmask", help="Full phone numbers (personal data!) instead of masked."),
    ] = False,
) -> None:
    """One CSV row per row of the file: state, attempts, result code, digits, times, error."""
    from cmvoice.campaigns.report import write_report

    store = _campaign_store()
    store.get(campaign_id)
    try:
        with out.open("w", newline="", encoding="utf-8") as file:
            count = write_report(store, campaign_id, file, unmask=unmask)
    except OSError as exc:
        message = f"cannot write {out}: {exc.strerror}"
        raise typer.BadParameter(message, param_hint="--out") from None
    err_console.print(f"{count:,} rows written to {out}", markup=False)
    if unmask:
        err_console.print("the report holds full phone numbers: keep it safe, delete it after use")


@campaign_app.command("list")
def campaign_list() -> None:
    """Every campaign still in Redis, newest first (an id starts with its UTC start date)."""
    table = Table(box=None, header_style="bold")
    # The id is what people copy: it never wraps or shrinks; the name gives way first.
    table.add_column("id", no_wrap=True, min_width=17)
    table.add_column("name", overflow="ellipsis", no_wrap=True, max_width=30)
    for column in ("kind", "status", "calls", "rejected"):
        table.add_column(column, no_wrap=True)
    for campaign in _campaign_store().list_campaigns():
        status = campaign.status.value
        if campaign.enqueue_state.value != "complete":
            status += f", {campaign.enqueue_state.value}"
        table.add_row(
            campaign.campaign_id,
            escape(campaign.name),
            campaign.kind,
            status,
            f"{campaign.enqueued:,}",
            f"{campaign.invalid + campaign.duplicates:,}",
        )
    console.print(table)


def main() -> None:
    """Entry point of the ``cmvoice`` script: clear messages instead of tracebacks."""
    try:
        app()
    except CmVoiceError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(1)
    except redis.ConnectionError as exc:
        settings = get_settings()
        err_console.print(
            f"[red]error:[/red] cannot reach Redis at {redact_url(settings.effective_redis_url)} "
            f"({exc}). Start `cmvoice dev` or `cmvoice worker`, or set CMVOICE_BROKER_URL."
        )
        sys.exit(1)
