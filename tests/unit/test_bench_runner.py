"""``python -m bench``: which benchmarks run, with which options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import benchmark_names, plan_runs

ROOT = Path(__file__).resolve().parents[2]
KNOWN = ["callbacks", "dispatch", "pacing"]


def test_with_no_name_every_benchmark_runs_without_options() -> None:
    assert plan_runs([], KNOWN) == [("callbacks", []), ("dispatch", []), ("pacing", [])]


def test_the_options_after_a_name_go_to_that_benchmark() -> None:
    argv = ["dispatch", "--rounds", "3", "pacing", "--help"]
    assert plan_runs(argv, KNOWN) == [("dispatch", ["--rounds", "3"]), ("pacing", ["--help"])]


@pytest.mark.parametrize(
    ("argv", "said"),
    [(["dispach"], "unknown benchmark 'dispach'"), (["--rounds", "3"], "before any benchmark")],
)
def test_an_unknown_name_or_an_option_before_any_name_is_refused(
    argv: list[str], said: str
) -> None:
    with pytest.raises(ValueError, match=said):
        plan_runs(argv, KNOWN)


def test_the_pacing_and_dispatch_benchmarks_are_found() -> None:
    assert {"dispatch", "pacing"} <= set(benchmark_names())
    assert not {"measure", "plain_celery", "probes", "processes"} & set(benchmark_names())


@pytest.mark.parametrize(("name", "option"), [("dispatch", "--rounds"), ("pacing", "--seconds")])
def test_a_benchmarks_help_lists_its_options_and_runs_nothing(name: str, option: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", name, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"usage: python -m bench {name}" in done.stdout
    assert option in done.stdout
    assert "== bench." not in done.stdout
