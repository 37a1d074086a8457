"""The ``cmvoice`` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cmvoice.errors import CmVoiceError, InvalidInstruction
from cmvoice.instructions import MODELS, infer_kind, parse_instruction

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
            err_console.print(f"[red]{label}: invalid {item_kind} instruction[/red]")
            for error in exc.errors:
                err_console.print(f"  {error.field}: {error.rule} (got {error.value})")
    if payloads:
        shown = payloads if isinstance(data, list) else payloads[0]
        # Plain print, not rich: the output is JSON meant for other programs.
        print(json.dumps(shown, indent=2, ensure_ascii=False))
    raise typer.Exit(1 if failed else 0)


def main() -> None:
    """Entry point of the ``cmvoice`` script: clear messages instead of tracebacks."""
    try:
        app()
    except CmVoiceError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        sys.exit(1)
