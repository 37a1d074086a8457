"""``cmvoice suppress``: the opt-out list, numbers never called (kept masked and hashed)."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cmvoice.cli.rendering import console, err_console

if TYPE_CHECKING:
    from cmvoice.rules.suppression import SuppressionList

suppress_app = typer.Typer(
    help="The suppression (opt-out) list: numbers that are never called.", no_args_is_help=True
)

Numbers = Annotated[list[str], typer.Argument(help="Numbers in international format.")]


def _list() -> "SuppressionList":
    from cmvoice.rules.suppression import SuppressionList
    from cmvoice.runtime import get_runtime

    return SuppressionList(get_runtime())


def _numbers_or_exit(numbers: list[str]) -> None:
    from cmvoice.privacy import mask_number
    from cmvoice.rules.suppression import parse_number

    bad = []
    for number in numbers:
        try:
            parse_number(number)
        except ValueError as exc:
            bad.append(f"  {mask_number(number)}: {exc}")
    if bad:
        err_console().print(
            "not international numbers (nothing changed):\n" + "\n".join(bad), markup=False
        )
        raise typer.Exit(1)


@suppress_app.command("add")
def suppress_add(numbers: Numbers) -> None:
    """Never call these numbers again (enqueue refuses them; queued calls are refused)."""
    _numbers_or_exit(numbers)
    suppressions = _list()
    added = suppressions.add(numbers, source="cli")
    err_console().print(f"{added} number(s) added; {len(numbers) - added} were on the list already")


@suppress_app.command("remove")
def suppress_remove(numbers: Numbers) -> None:
    """Take numbers off the list (they may be called again)."""
    _numbers_or_exit(numbers)
    suppressions = _list()
    removed = suppressions.remove(numbers)
    err_console().print(f"{removed} number(s) removed; {len(numbers) - removed} were not on it")


@suppress_app.command("check")
def suppress_check(number: Annotated[str, typer.Argument(help="A number, international.")]) -> None:
    """Say whether a number is suppressed (exit code 0 when it is, 1 when it is not)."""
    from cmvoice.privacy import mask_number

    _numbers_or_exit([number])
    suppressions = _list()
    if suppressions.contains(number):
        print(f"{mask_number(number)} is suppressed")
        return
    print(f"{mask_number(number)} is not suppressed")
    raise typer.Exit(1)


@suppress_app.command("list")
def suppress_list() -> None:
    """Every suppressed number, masked, with when and how it was added."""
    from rich.table import Table

    from cmvoice.records import format_ms

    suppressions = _list()
    table = Table(box=None, header_style="bold")
    for column in ("number", "added", "source"):
        table.add_column(column)
    for entry in suppressions.entries():
        table.add_row(entry.masked, format_ms(str(entry.added_at_ms)), entry.source)
    console().print(table)
    err_console().print(f"{len(suppressions)} number(s) suppressed")


@suppress_app.command("import")
def suppress_import(
    file: Annotated[
        Path, typer.Argument(help="One number per line, or a CSV with a callee column.")
    ],
) -> None:
    """Suppress every number in FILE; lines that are not numbers are reported, the rest added."""
    if not file.is_file():
        raise typer.BadParameter(f"{file}: no such file", param_hint="FILE")
    suppressions = _list()
    added, errors = suppressions.import_file(file)
    for line, error in errors:
        err_console().print(f"line {line}: {error}", markup=False)
    err_console().print(f"{added} number(s) added from {file}; {len(errors)} line(s) refused")
    if errors:
        raise typer.Exit(1)
