"""Importing the contract modules, or the command, must not load the queue machinery."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Modules a web app imports to build and check instructions, or to read events.
CONTRACT_MODULES = (
    "cmvoice",
    "cmvoice.instructions",
    "cmvoice.events",
    "cmvoice.errors",
    "cmvoice.signing",
    "cmvoice.simulator.dtmf",
)
#: What a Celery worker needs, and a contract module does not.
QUEUE_MACHINERY = ("celery", "kombu", "redis")


def loaded_after(statement: str, *, watched: tuple[str, ...]) -> list[str]:
    """Which of ``watched`` a fresh interpreter holds after running ``statement``."""
    code = (
        f"import json, sys\n{statement}\n"
        f"print(json.dumps(sorted(m for m in {list(watched)!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize("module", CONTRACT_MODULES)
def test_a_contract_module_imports_without_celery_kombu_or_redis(module: str) -> None:
    # Given a fresh interpreter
    # When the module is imported
    loaded = loaded_after(f"import {module}", watched=QUEUE_MACHINERY)

    # Then none of the queue machinery came with it
    assert loaded == []


def test_a_public_name_that_needs_the_queue_still_comes_from_the_package() -> None:
    # Given a fresh interpreter
    # When `enqueue` is taken from the package, as the README shows
    loaded = loaded_after(
        "import cmvoice\nassert callable(cmvoice.enqueue)", watched=QUEUE_MACHINERY
    )

    # Then it is imported on first use, with the Redis it needs (with the Redis broker, the
    # dispatch message is pushed by the ledger's own step: Celery and kombu are not needed)
    assert loaded == ["redis"]


def test_the_command_loads_what_a_command_needs_only_when_it_runs() -> None:
    # Given a fresh interpreter
    # When the `cmvoice` command's module is imported (as for `cmvoice --help`)
    loaded = loaded_after(
        "import cmvoice.cli",
        watched=(
            *QUEUE_MACHINERY,
            *("pydantic", "pydantic_settings", "fastapi", "requests", "rich"),
        ),
    )

    # Then no command's own dependencies were loaded: each command imports its own, and rich
    # comes when something is shown through it (`cmvoice send` prints a plain id)
    assert loaded == []


def test_the_metrics_module_loads_prometheus_only_when_a_metric_is_counted() -> None:
    # Given a fresh interpreter
    # When the module the dispatch path and the calling rules count with is imported
    imported = loaded_after(
        "import cmvoice.metrics", watched=(*QUEUE_MACHINERY, "prometheus_client", "pydantic")
    )
    # and when a placed call is counted with it
    counted = loaded_after(
        "import cmvoice.metrics\ncmvoice.metrics.count_placed('otp')",
        watched=(*QUEUE_MACHINERY, "prometheus_client"),
    )

    # Then importing it costs nothing of Prometheus, Redis or Celery; counting loads Prometheus
    assert imported == []
    assert counted == ["prometheus_client"]
