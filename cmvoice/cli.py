"""The ``cmvoice`` command."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import redis
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cmvoice.config import DEFAULT_RECEIVER_PORT, Settings, get_settings
from cmvoice.embedded_redis import EmbeddedRedis, is_answering
from cmvoice.errors import CmVoiceError, InvalidInstruction
from cmvoice.instructions import MODELS, infer_kind, parse_instruction
from cmvoice.producer import enqueue
from cmvoice.records import attempt_chain, describe_record
from cmvoice.runtime import get_runtime
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
        str, typer.Option("--queues", "-Q", help="Comma-separated queues to consume.")
    ] = ",".join(ALL_QUEUES),
    beat: Annotated[
        bool, typer.Option("--beat", "-B", help="Also run the reconciler's periodic schedule.")
    ] = False,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "info",
) -> None:
    """Start a Celery worker (thread pool). Other options are passed on to Celery."""
    with _broker_for("worker") as settings:
        argv = ["worker", "--pool", "threads", "--concurrency", str(concurrency)]
        argv += ["--queues", queues, "--loglevel", loglevel]
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
            f"[red]error:[/red] cannot reach Redis at {_safe_url(settings.effective_redis_url)} "
            f"({exc}). Start `cmvoice dev` or `cmvoice worker`, or set CMVOICE_BROKER_URL."
        )
        sys.exit(1)


def _safe_url(url: str) -> str:
    """A URL without its password."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":****@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
