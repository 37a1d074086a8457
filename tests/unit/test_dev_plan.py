"""What `cmvoice dev` asks its worker to run: the queues it consumes, the modules it imports."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from cmvoice.config import Settings
from cmvoice.dev.plan import ENCRYPTION_KEY_FILE, DevOptions, DevPlan
from cmvoice.messages import ALL_QUEUES

#: A result queue of its own, as an application's result tasks get.
OUTCOMES_QUEUE = "cmvoice.outcomes"


def worker_argv(plan: DevPlan) -> list[str]:
    (worker,) = [child for child in plan.children() if child.name == "worker"]
    return worker.args


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[index + 1] for index, word in enumerate(argv) if word == option]


def settings_with_result_tasks() -> Settings:
    return Settings(
        _env_file=None,
        result_tasks=["myapp.calls.record_outcome"],
        result_queue=OUTCOMES_QUEUE,
    )


def test_without_include_the_worker_leaves_the_result_queue_to_the_application(
    tmp_path: Path,
) -> None:
    # Given result tasks the dev worker cannot import
    plan = DevPlan(settings_with_result_tasks(), DevOptions(data_dir=tmp_path))

    # When dev plans its worker
    argv = worker_argv(plan)

    # Then it consumes cmvoice's queues only, and says whose messages wait
    queues = option_values(argv, "--queues")[0].split(",")
    assert queues == list(ALL_QUEUES)
    assert option_values(argv, "--include") == []
    assert plan.stranded_result_tasks == ["myapp.calls.record_outcome"]


def test_with_include_the_worker_imports_each_module_and_consumes_the_result_queue(
    tmp_path: Path,
) -> None:
    # Given two modules to include
    options = DevOptions(data_dir=tmp_path, includes=("myapp.calls", "myapp.more"))
    plan = DevPlan(settings_with_result_tasks(), options)

    # When dev plans its worker
    argv = worker_argv(plan)

    # Then it imports both and consumes the result queue as well
    assert option_values(argv, "--include") == ["myapp.calls", "myapp.more"]
    assert OUTCOMES_QUEUE in option_values(argv, "--queues")[0].split(",")
    assert plan.stranded_result_tasks == []


def test_the_demo_worker_imports_the_demo_and_consumes_the_result_queue(tmp_path: Path) -> None:
    # Given the demo
    plan = DevPlan(settings_with_result_tasks(), DevOptions(data_dir=tmp_path, demo=True))

    # When dev plans its worker and the environment of its children
    argv = worker_argv(plan)
    env = plan.shared_env(callback_secret="a-secret")

    # Then the worker runs the demo's result task, next to the application's
    assert option_values(argv, "--include") == ["cmvoice.dev.demo"]
    assert OUTCOMES_QUEUE in option_values(argv, "--queues")[0].split(",")
    assert env["CMVOICE_RESULT_TASKS"].split(",") == [
        "myapp.calls.record_outcome",
        "cmvoice.dev.demo.record_outcome",
    ]


def test_dev_keeps_its_encryption_key_readable_by_its_owner_only_and_reuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no encryption key configured
    monkeypatch.delenv("CMVOICE_ENCRYPTION_KEY", raising=False)
    settings = Settings(_env_file=None)
    assert settings.encryption_key is None

    # When dev plans a first run, then a second one on the same data directory
    first = DevPlan(settings, DevOptions(data_dir=tmp_path))
    second = DevPlan(settings, DevOptions(data_dir=tmp_path))

    # Then the first wrote a Fernet key to a file only its owner may read or write
    key_file = tmp_path / ENCRYPTION_KEY_FILE
    assert first.encryption_key_file == second.encryption_key_file == key_file.resolve()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first.settings.encryption_key is not None
    key = first.settings.encryption_key.get_secret_value()
    assert key_file.read_text(encoding="ascii").strip() == key
    Fernet(key.encode())
    # and the second uses the same key, so what the first encrypted stays readable
    assert second.settings.encryption_key is not None
    assert second.settings.encryption_key.get_secret_value() == key
    assert second.shared_env(callback_secret="s")["CMVOICE_ENCRYPTION_KEY"] == key
