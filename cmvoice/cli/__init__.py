"""The ``cmvoice`` command: its commands assembled, ``--version``, and the error boundary.

Start-up is most of what a command costs, so the command modules keep it small: they import
what a command needs inside it, rich only when something is shown through it
(``rendering``), and they do without ``from __future__ import annotations``: typer reads the
annotations of every command at each start, and from strings it would compile each one anew
(annotations naming what is imported only for type checking are quoted instead).
"""

import sys
from typing import Annotated

import typer

from cmvoice._version import __version__
from cmvoice.cli import calls, campaigns, services, suppress
from cmvoice.cli.rendering import err_console, escape
from cmvoice.errors import CmVoiceError
from cmvoice.outage import is_outage, unavailable

#: ``-h`` as well as ``--help``, on every command and sub-command (sub-contexts inherit it).
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="cmvoice",
    help="A voice-call job queue for CM.com's Voice API (Notification, OTP, Request-DTMF).",
    no_args_is_help=True,
    context_settings=CONTEXT_SETTINGS,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"cmvoice {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """A voice-call job queue for CM.com's Voice API (Notification, OTP, Request-DTMF)."""


app.command()(calls.validate)
app.command()(calls.send)
app.add_typer(calls.call_app, name="call")
# Options `cmvoice worker` does not know go on to Celery's worker (--hostname, --include...).
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    services.worker
)
app.command()(services.receiver)
app.command()(services.api)
app.command()(services.simulator)
app.command()(services.dev)
app.command()(services.keygen)
app.add_typer(campaigns.campaign_app, name="campaign")
app.add_typer(suppress.suppress_app, name="suppress")


def main() -> None:
    """Entry point of the ``cmvoice`` script: clear messages instead of tracebacks."""
    if "--version" in sys.argv[1:]:
        # On every command, as -h is: `cmvoice campaign report --version` too (click's eager
        # options belong to one command only).
        print(f"cmvoice {__version__}")
        return
    try:
        app()
    except CmVoiceError as exc:
        err_console().print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(1)
    except Exception as exc:
        if not is_outage(exc):
            raise
        from cmvoice.config import get_settings

        settings = get_settings()
        outage = unavailable(exc, settings.effective_redis_url, settings.effective_broker_url)
        err_console().print(f"[red]error:[/red] {escape(str(outage))}")
        sys.exit(1)
