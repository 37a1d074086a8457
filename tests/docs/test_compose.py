"""docker-compose.yml, the Dockerfile and .env.example: checked without Docker (none here).

Every service must run a command that exists, and every variable they use must be a setting.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
import typer.main
import yaml
from celery.bin.celery import celery as celery_command

from cmvoice.cli import app as cmvoice_app
from cmvoice.config import Settings
from cmvoice.dev.plan import FLOWER_TASK_COLUMNS
from cmvoice.worker import app as celery_app
from tests.support.settings_doc import variables

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
ENV_EXAMPLE = (ROOT / ".env.example").read_text(encoding="utf-8")
CMVOICE_SERVICES = sorted(name for name, service in SERVICES.items() if "build" in service)
VARIABLE = re.compile(r"\bCMVOICE_[A-Z0-9_]+")


def image_entrypoint() -> list[str]:
    match = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", DOCKERFILE, re.MULTILINE)
    assert match, "the Dockerfile has an exec-form ENTRYPOINT"
    return list(yaml.safe_load(match.group(1)))


def _words(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else list(value)


def argv(service: dict[str, Any]) -> list[str]:
    """What the container runs: its entrypoint (or the image's) and its command."""
    entrypoint = service.get("entrypoint", image_entrypoint())
    return [*_words(entrypoint), *_words(service.get("command", []))]


def cmvoice_commands() -> Any:
    """The `cmvoice` command as a click-like group (typer ships its own click)."""
    return typer.main.get_command(cmvoice_app)


def test_the_services_are_the_ones_an_operator_expects() -> None:
    # Given / When / Then
    assert set(SERVICES) == {"redis", "worker", "beat", "receiver", "flower", "simulator"}
    assert SERVICES["simulator"]["profiles"] == ["sandbox"]
    assert image_entrypoint() == ["cmvoice"]


@pytest.mark.parametrize("name", CMVOICE_SERVICES)
def test_each_cmvoice_service_runs_a_real_command_with_options_it_accepts(name: str) -> None:
    # Given the service's command line
    program, *args = argv(SERVICES[name])

    if program == "cmvoice":
        # Then it names a registered `cmvoice` subcommand, and its options parse
        group = cmvoice_commands()
        assert args[0] in group.commands, f"{name}: no `cmvoice {args[0]}`"
        group.commands[args[0]].make_context(args[0], args[1:])
    else:
        # Or it is Celery on cmvoice's app, with a real Celery subcommand
        assert program == "celery", f"{name}: runs {program}"
        assert args[:2] == ["-A", "cmvoice.worker"], f"{name}: not cmvoice's Celery app"
        subcommand = args[2]
        assert subcommand in celery_command.list_commands(click.Context(celery_command))
        if subcommand != "flower":  # Flower parses its own options (tornado's)
            # Celery's option callbacks read the app from the context, as `-A` would set it.
            context = SimpleNamespace(app=celery_app)
            celery_command.commands[subcommand].make_context(subcommand, args[3:], obj=context)


def test_flower_runs_with_basic_auth_from_the_configuration() -> None:
    # Given the flower service
    flower = SERVICES["flower"]

    # Then it asks for basic auth from CMVOICE_FLOWER_USER and CMVOICE_FLOWER_PASSWORD
    assert argv(flower)[:4] == ["celery", "-A", "cmvoice.worker", "flower"]
    auth = flower["environment"]["FLOWER_BASIC_AUTH"]
    assert "CMVOICE_FLOWER_USER" in auth
    assert "${CMVOICE_FLOWER_PASSWORD:?" in auth, "no password means no Flower"


def test_flower_shows_the_same_task_columns_as_cmvoice_dev() -> None:
    # Given the flower service's command line
    flower_args = argv(SERVICES["flower"])

    # Then its Tasks page has the columns `cmvoice dev` gives it (args and result among them)
    assert f"--tasks_columns={FLOWER_TASK_COLUMNS}" in flower_args


def test_exactly_one_beat_runs_and_workers_can_be_scaled() -> None:
    # Given / When / Then: beat is a service of its own, and no worker runs beat as well
    assert argv(SERVICES["beat"])[3] == "beat"
    assert "deploy" not in SERVICES["beat"]
    for name in CMVOICE_SERVICES:
        assert not {"--beat", "-B"} & set(argv(SERVICES[name])), name
    # --scale worker=N needs no fixed container name and no published port
    assert "container_name" not in SERVICES["worker"]
    assert "ports" not in SERVICES["worker"]


def test_redis_persists_to_an_append_only_file_on_a_volume_and_has_a_health_check() -> None:
    redis = SERVICES["redis"]
    assert redis["image"].startswith("redis:7")
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_the_receiver_listens_on_every_interface_and_checks_its_health() -> None:
    receiver = SERVICES["receiver"]
    assert argv(receiver)[:2] == ["cmvoice", "receiver"]
    assert "0.0.0.0" in argv(receiver)
    assert "/healthz" in " ".join(receiver["healthcheck"]["test"])


def test_every_cmvoice_variable_in_compose_and_the_dockerfile_is_a_setting() -> None:
    # Given every CMVOICE_ name the deployment files mention
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8") + DOCKERFILE
    used = set(VARIABLE.findall(text))

    # Then each is a field of Settings
    assert used, "the files use settings"
    assert used <= set(variables()), used - set(variables())


def example_assignments() -> dict[str, str]:
    """``# CMVOICE_X=value`` lines of .env.example (commented or not), by variable."""
    found: dict[str, str] = {}
    for line in ENV_EXAMPLE.splitlines():
        match = re.fullmatch(r"#?\s*(CMVOICE_[A-Z0-9_]+)=(.*)", line.strip())
        if match and not line.startswith("#   "):
            found.setdefault(match.group(1), match.group(2))
    return found


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    # Given the variables .env.example mentions anywhere, and the ones it assigns
    mentioned = set(VARIABLE.findall(ENV_EXAMPLE))
    assigned = set(example_assignments())

    # Then every setting has its line, and no name is made up
    assert set(variables()) <= assigned, set(variables()) - assigned
    assert mentioned <= set(variables()), mentioned - set(variables())


@pytest.mark.parametrize("name", sorted(variables()))
def test_env_example_shows_the_default_or_a_valid_example(name: str) -> None:
    # Given the value .env.example shows for a variable
    field = variables()[name]
    value = example_assignments()[name]

    # When it is read as Settings would read it
    parsed = getattr(Settings(_env_file=None, **{field: value}), field)  # type: ignore[call-arg]

    # Then it is the default (or, for a setting without one, at least a valid value)
    default = Settings.model_fields[field].get_default(call_default_factory=True)
    if default is not None and default != []:
        assert parsed == default, f"{name}={value} is not the default {default!r}"
