"""``cmvoice validate``, ``send`` and ``call status``: one call at a time."""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cmvoice.cli.rendering import (
    attempts_table,
    console,
    err_console,
    print_field_errors,
    print_json,
    record_table,
)
from cmvoice.errors import NOTHING, CallNotAllowed, InvalidInstruction

#: The options of ``send`` that set an instruction field, by CM's name of the field.
SEND_OPTIONS = {
    "prompt": "--prompt TEXT",
    "code": "--code TEXT",
    "min-digits": "--min-digits N",
    "max-digits": "--max-digits N",
    "max-attempts": "--max-attempts N",
    "instruction-id": "--instruction-id TEXT",
}

call_app = typer.Typer(help="Look at single calls in the ledger.", no_args_is_help=True)

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


def validate(
    file: Annotated[
        str, typer.Argument(help="A JSON instruction (or a list of them); - for stdin.")
    ],
    kind: KindOption = None,
) -> None:
    """Check instructions against CM's rules and print the exact payload CM would receive."""
    from cmvoice.instructions import MODELS, infer_kind, parse_instruction

    data = _read_json(file)
    items = data if isinstance(data, list) else [data]
    failed = False
    payloads = []
    for number, item in enumerate(items, start=1):
        label = f"instruction {number}" if len(items) > 1 else "instruction"
        if not isinstance(item, dict):
            err_console().print(f"[red]{label}: must be a JSON object[/red]")
            failed = True
            continue
        item_kind = kind or infer_kind(item)
        if item_kind not in MODELS:
            raise typer.BadParameter(f"must be one of {', '.join(MODELS)}", param_hint="--kind")
        try:
            payloads.append(parse_instruction(item_kind, item).to_payload())
        except InvalidInstruction as exc:
            failed = True
            print_field_errors(exc, label)
    if payloads:
        print_json(payloads if isinstance(data, list) else payloads[0])
    raise typer.Exit(1 if failed else 0)


def _missing_field_hints(exc: InvalidInstruction) -> dict[str, str]:
    """For each field the instruction lacks, the option of ``send`` that sets it."""
    return {
        error.field: f"add {SEND_OPTIONS.get(error.field, f'--field {error.field}=VALUE')}"
        for error in exc.errors
        if error.value == NOTHING
    }


def send(
    kind: Annotated[str, typer.Argument(help="notification, otp or dtmf.")],
    callee: Annotated[str, typer.Option(help="The number to call, international format.")],
    caller: Annotated[str, typer.Option(help="The number shown as the caller.")],
    prompt: Annotated[
        str | None, typer.Option(help="What the callee hears (notification; dtmf: optional).")
    ] = None,
    code: Annotated[str | None, typer.Option(help="The one-time code to read out (otp).")] = None,
    min_digits: Annotated[int | None, typer.Option(help="Fewest digits to press (dtmf).")] = None,
    max_digits: Annotated[int | None, typer.Option(help="Most digits to press (dtmf).")] = None,
    max_attempts: Annotated[
        int | None, typer.Option(help="Times the callee may try (dtmf).")
    ] = None,
    instruction_id: Annotated[str | None, typer.Option(help="Your own id (default: new).")] = None,
    field: Annotated[
        list[str] | None,
        typer.Option("--field", "-f", help="Any other field as NAME=VALUE (JSON values ok)."),
    ] = None,
    respect_window: Annotated[
        bool,
        typer.Option(
            "--respect-window",
            help="Wait for the calling window (CMVOICE_CALLING_WINDOW) in the callee's time "
            "zone; by default a call you send now goes now.",
        ),
    ] = False,
    expires_in: Annotated[
        str | None,
        typer.Option(help="Not placed after this long (e.g. 5m): the call ends EXPIRED."),
    ] = None,
) -> None:
    """Enqueue one call and print its instruction id.

    Each kind needs its own options, besides --callee and --caller:

    notification: --prompt.
    otp: --code.
    dtmf: --min-digits, --max-digits and --max-attempts (and --prompt to say what to press).

    Any other field of CM's instruction: --field NAME=VALUE (e.g. -f max-replays=2).
    """
    from cmvoice.instructions import parse_instruction

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
    expires_s = None
    if expires_in is not None:
        from cmvoice.config import parse_duration

        try:
            expires_s = parse_duration(expires_in)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--expires-in") from None
    try:
        instruction = parse_instruction(kind, data)
        # Only a valid call pays for the queue's imports (Celery, kombu, redis): a mistake is
        # reported at once.
        from cmvoice.producer import enqueue

        ticket = enqueue(instruction, respect_window=respect_window, expires_in=expires_s)
    except InvalidInstruction as exc:
        print_field_errors(exc, hints=_missing_field_hints(exc))
        raise typer.Exit(1) from None
    except CallNotAllowed as refusal:
        err_console().print(f"not sent: refused by rule {refusal.rule}: {refusal}", markup=False)
        raise typer.Exit(1) from None
    if not ticket.created:
        err_console().print(f"instruction {ticket.instruction_id} was already queued")
    print(ticket.instruction_id)


@call_app.command("status")
def call_status(
    instruction_id: Annotated[str, typer.Argument(help="The instruction id enqueue printed.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a call's ledger record and all its attempts (numbers masked, never the OTP code)."""
    from cmvoice.campaigns.window_wait import describe_attempt
    from cmvoice.records import attempt_chain
    from cmvoice.runtime import get_runtime

    runtime = get_runtime()
    ledger = runtime.ledger
    record = ledger.get(instruction_id)
    if record is None:
        err_console().print(f"no call {instruction_id} in the ledger (unknown, or expired)")
        raise typer.Exit(1)
    view = describe_attempt(runtime, record)
    chain = [
        describe_attempt(runtime, attempt) for attempt in attempt_chain(ledger, instruction_id)
    ]
    if as_json:
        print_json({**view, "attempts": chain})
        return
    console().print(record_table(view))
    if len(chain) > 1:
        console().print(attempts_table(chain))
