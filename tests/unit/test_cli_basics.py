"""What an on-call person expects of any command: --version, -h, completion, helpful errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from cmvoice import __version__
from cmvoice.cli import app
from cmvoice.cli.services import LazyDefault
from cmvoice.config import Settings, settings_errors
from cmvoice.embedded_redis import free_port
from cmvoice.instructions import MODELS
from tests.support.stack import CALLEE, CALLER

COMMAND = str(Path(sys.executable).with_name("cmvoice"))
#: A wide terminal without colours: help lines are not wrapped inside their boxes.
WIDE = {"COLUMNS": "200", "NO_COLOR": "1"}


def cmvoice(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``cmvoice`` command as a user would, in a wide terminal."""
    return subprocess.run(
        [COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={**os.environ, **WIDE, **(env or {})},
    )


def command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command, as the words that name it (the root is ``()``).

    Typer ships its own click: a group is what has ``commands``.
    """
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths += command_paths(sub, (*path, name))
    return paths


ROOT = typer.main.get_command(app)
PATHS = command_paths(ROOT)


def command_at(path: tuple[str, ...]) -> Any:
    command: Any = ROOT
    for name in path:
        command = command.commands[name]
    return command


def help_text(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def test_version_prints_the_name_and_the_package_version() -> None:
    # Given / When
    result = cmvoice("--version")

    # Then
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"cmvoice {__version__}\n"


@pytest.mark.parametrize(
    "path", [("send",), ("campaign", "report"), ("worker",), ("suppress", "check")]
)
def test_version_works_on_any_command_too(path: tuple[str, ...]) -> None:
    # Given / When a command, not the root, is asked for its version (before any argument
    # it requires)
    result = cmvoice(*path, "--version")

    # Then it prints the version, and does nothing else
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"cmvoice {__version__}\n"


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(path) or "cmvoice" for path in PATHS])
def test_every_command_and_sub_command_takes_dash_h_for_help(path: tuple[str, ...]) -> None:
    # Given / When a command is asked for help with -h
    result = CliRunner().invoke(app, [*path, "-h"], env=WIDE)

    # Then it shows the same help as --help
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    assert result.output == help_text(*path)


def test_the_commands_cover_every_part_of_the_system() -> None:
    # Given / When / Then: the parametrized -h test above runs over all of these
    assert {" ".join(path) for path in PATHS} >= {
        "validate",
        "send",
        "call status",
        "worker",
        "receiver",
        "simulator",
        "dev",
        "campaign start",
        "campaign status",
        "campaign report",
        "campaign list",
    }


def test_tab_completion_completes_commands_and_sub_commands() -> None:
    # Given the root help, which offers to install completion
    assert "--install-completion" in help_text()
    assert "--show-completion" in help_text()

    # When bash asks for the completions of `cmvoice camp` and `cmvoice campaign st`
    command = cmvoice(env={"_CMVOICE_COMPLETE": "complete_bash", "COMP_WORDS": "cmvoice camp",
                           "COMP_CWORD": "1"})  # fmt: skip
    sub_command = cmvoice(env={"_CMVOICE_COMPLETE": "complete_bash",
                               "COMP_WORDS": "cmvoice campaign st", "COMP_CWORD": "2"})  # fmt: skip

    # Then
    assert command.stdout.split() == ["campaign"]
    assert sub_command.stdout.split() == ["start", "status"]


def lazy_defaults() -> list[tuple[tuple[str, ...], Any]]:
    return [
        (path, param)
        for path in PATHS
        for param in command_at(path).params
        if isinstance(param.default, LazyDefault)
    ]


@pytest.mark.parametrize(
    ("path", "param"),
    lazy_defaults(),
    ids=[f"{' '.join(path)} {param.name}" for path, param in lazy_defaults()],
)
def test_a_default_owned_by_another_module_is_shown_in_the_help(
    path: tuple[str, ...], param: Any
) -> None:
    # Given an option whose default lives in the module that owns it (a port, the queues)
    default = param.default
    assert isinstance(default, LazyDefault)

    # When the command's help is shown
    shown = help_text(*path)

    # Then the default, read from its owner, is shown as it would be used
    assert default() is not None
    assert f"[default: {default}]" in shown


def test_send_help_names_the_options_each_kind_needs() -> None:
    # Given the fields each kind of instruction requires, besides the two numbers
    required = {
        kind: sorted(
            f"--{field.alias}"
            for name, field in model.model_fields.items()
            if field.is_required() and name not in ("callee", "caller")
        )
        for kind, model in MODELS.items()
    }
    assert required["dtmf"] == ["--max-attempts", "--max-digits", "--min-digits"]

    # When the help of `send` is shown
    lines = help_text("send").splitlines()

    # Then the line of each kind names each of its required options
    for kind, options in required.items():
        line = next(line for line in lines if line.strip().startswith(f"{kind}:"))
        for option in options:
            assert option in line, (kind, option, line)


def test_send_dtmf_without_max_attempts_says_which_option_to_add(tmp_path: Path) -> None:
    # Given a dtmf call without --max-attempts
    # When it is sent (validation fails before anything is queued: no Redis needed)
    result = cmvoice(
        "send", "dtmf", "--callee", CALLEE, "--caller", CALLER,
        "--prompt", "Press 1 to confirm.", "--min-digits", "1", "--max-digits", "1",
        cwd=tmp_path,
    )  # fmt: skip

    # Then it fails naming the field and the option that sets it, and queues nothing
    assert result.returncode == 1
    assert result.stdout == ""
    assert "max-attempts: Field required" in result.stderr
    assert "add --max-attempts N" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_field_without_an_option_of_its_own_suggests_field(tmp_path: Path) -> None:
    # Given a notification whose replays wait for a key, without the replay prompt
    # When it is sent
    result = cmvoice(
        "send", "notification", "--callee", CALLEE, "--caller", CALLER, "--prompt", "Hi.",
        "-f", "max-replays=2",
        cwd=tmp_path,
    )  # fmt: skip

    # Then it says how to give the field
    assert result.returncode == 1
    assert "add --field replay-prompt=VALUE" in result.stderr


def test_a_bad_setting_is_echoed_back_naming_its_variable(tmp_path: Path) -> None:
    # Given a rate limit with a typo
    # When any command reads the settings
    result = cmvoice(
        "send", "notification", "--callee", CALLEE, "--caller", CALLER, "--prompt", "Hi.",
        env={"CMVOICE_RATE_LIMIT": "10/x"},
        cwd=tmp_path,
    )  # fmt: skip

    # Then it stops with the variable, the rule and the value it got
    assert result.returncode == 1
    assert (
        "CMVOICE_RATE_LIMIT: must be a positive rate such as 10/s, 600/m or 5/10s (got '10/x')"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_a_bad_product_token_is_named_but_never_echoed(tmp_path: Path) -> None:
    # Given a product token that is not a GUID (perhaps another secret pasted by mistake)
    secret = "not-a-guid-but-a-secret-1234"

    # When a command reads the settings
    result = cmvoice(
        "send", "notification", "--callee", CALLEE, "--caller", CALLER, "--prompt", "Hi.",
        env={"CMVOICE_PRODUCT_TOKEN": secret},
        cwd=tmp_path,
    )  # fmt: skip

    # Then the variable and its rule are named, the value hidden
    assert result.returncode == 1
    assert "CMVOICE_PRODUCT_TOKEN: must be a GUID" in result.stderr
    assert "(got <hidden>)" in result.stderr
    assert secret not in result.stderr


def test_no_secret_setting_is_ever_echoed_in_an_error() -> None:
    # Given a wrong value for every secret setting
    secrets: dict[str, Any] = {
        name: 424242
        for name, field in Settings.model_fields.items()
        if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))
    }
    assert set(secrets) == {
        "product_token",
        "callback_secret",
        "flower_password",
        "encryption_key",
        "api_keys",
    }

    # When they are validated
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **secrets)  # type: ignore[call-arg]
    errors = settings_errors(caught.value)

    # Then each is named by its variable, its value hidden
    assert sorted(error.field for error in errors) == sorted(
        f"CMVOICE_{name.upper()}" for name in secrets
    )
    assert {error.value for error in errors} == {"<hidden>"}
    assert not any("424242" in str(error) for error in errors)


def test_an_unreachable_ledger_redis_is_named_not_the_broker(tmp_path: Path) -> None:
    # Given the ledger's Redis and the broker at two addresses where nothing listens
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    broker_url = f"redis://127.0.0.1:{free_port()}/0"

    # When a call is sent (the ledger is written first)
    result = cmvoice(
        "send", "notification", "--callee", CALLEE, "--caller", CALLER, "--prompt", "Hello.",
        env={"CMVOICE_REDIS_URL": redis_url, "CMVOICE_BROKER_URL": broker_url},
        cwd=tmp_path,
    )  # fmt: skip

    # Then the error names the ledger's Redis and its variable, not the broker
    assert result.returncode == 1
    assert f"cannot reach Redis (the ledger) at {redis_url}" in result.stderr
    assert "CMVOICE_REDIS_URL" in result.stderr
    assert broker_url not in result.stderr
    assert "Traceback" not in result.stderr
