"""``cmvoice dev`` run as a user runs it, from tests: its ports, environment, output and stop.

The ``dev_run`` fixture gives a clean environment (no CMVOICE_ or FLOWER_ variable) and free
ports; ``start_dev`` starts the command and waits until it says it is up, ``stop_dev`` stops it
with Ctrl-C. Every process a run starts carries a marker in its environment, so that a test can
tell that nothing was left behind (``DevRun.leftovers``).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil
import pytest

from cmvoice.embedded_redis import free_port
from tests.support.stack import CALLEE, CALLER, wait_for

#: The ``cmvoice`` command of this environment, as a user's shell finds it.
COMMAND = str(Path(sys.executable).with_name("cmvoice"))
#: Environment variable that marks every process a test starts, children and grandchildren
#: included (they inherit it): how the test finds anything left behind.
MARKER = "CMVOICE_DEV_TEST_MARKER_ID"
#: Seconds ``cmvoice dev`` may take to say it is up (it takes 5 to 15).
DEFAULT_START_TIMEOUT_S = 60.0


@dataclass
class DevRun:
    """The ports, environment and working directory of one ``cmvoice dev`` run."""

    cwd: Path
    env: dict[str, str]
    marker: str
    ports: dict[str, int] = field(default_factory=dict)

    def argv(self, *extra: str) -> list[str]:
        return [COMMAND, "dev", *self.dev_options(), *extra]

    def dev_options(self) -> list[str]:
        """The options that keep this run on its own ports and data."""
        return [
            "--receiver-port", str(self.ports["receiver"]),
            "--simulator-port", str(self.ports["simulator"]),
            "--flower-port", str(self.ports["flower"]),
            "--data-dir", str(self.cwd / "data"),
        ]  # fmt: skip

    def url(self, part: str) -> str:
        """``http://127.0.0.1:<port>`` of ``receiver``, ``simulator`` or ``flower``."""
        return f"http://127.0.0.1:{self.ports[part]}"

    def leftovers(self) -> list[psutil.Process]:
        """Every live process carrying this run's marker (started by the run, or its children),
        or working in its directory: Redis overwrites its environment with its process title,
        so the marker cannot be read from it."""
        found = []
        for process in psutil.process_iter():
            try:
                if process.status() == psutil.STATUS_ZOMBIE:
                    continue
                marked = process.environ().get(MARKER) == self.marker
                if marked or Path(process.cwd()).is_relative_to(self.cwd):
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def busy_ports(self) -> list[int]:
        return [port for port in self.ports.values() if _listening(port)]

    def kill_leftovers(self) -> None:
        """A safety net, so that a failing test does not leave servers behind for the next."""
        for process in self.leftovers():
            process.kill()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def new_dev_run(cwd: Path) -> DevRun:
    """A clean environment: no CMVOICE_ or FLOWER_ variable (conftest sets some), free ports."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CMVOICE_", "FLOWER_"))
    }
    run = DevRun(cwd=cwd, env=env, marker=secrets.token_hex(8))
    run.ports = {name: free_port() for name in ("receiver", "simulator", "flower", "redis")}
    env.update(
        {
            MARKER: run.marker,
            "CMVOICE_EMBEDDED_REDIS_PORT": str(run.ports["redis"]),
            # A wide, colourless terminal: the demo table stays on one line per call.
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }
    )
    return run


@pytest.fixture
def dev_run(tmp_path: Path) -> Iterator[DevRun]:
    """A ``DevRun`` in the test's own directory; whatever it left running is killed after."""
    run = new_dev_run(tmp_path)
    yield run
    run.kill_leftovers()


class Output:
    """Reads a process's output in a thread, so its pipe never fills up."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def join(self) -> None:
        self._thread.join(timeout=10)


def start_dev(
    dev_run: DevRun, *extra: str, argv: list[str] | None = None
) -> tuple[subprocess.Popen[str], Output]:
    """Start ``cmvoice dev`` (or ``argv``) and wait until it says it is up; fail with its log
    if it exits first."""
    process = subprocess.Popen(
        argv or dev_run.argv(*extra),
        cwd=dev_run.cwd,
        env=dev_run.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process)

    def up() -> bool:
        return "cmvoice dev is up" in output.text or process.poll() is not None

    wait_for(up, DEFAULT_START_TIMEOUT_S)
    assert process.poll() is None, output.text[-4000:]
    return process, output


def stop_dev(process: subprocess.Popen[str], output: Output) -> int:
    """Ctrl-C, as a user stops it; its exit code."""
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=45)
    output.join()
    print(output.text)  # shown by pytest only when the test fails
    return code


def run_cli(dev_run: DevRun, argv: list[str]) -> str:
    """A ``cmvoice`` command from another terminal, as a user runs it; its standard output."""
    done = subprocess.run(
        argv, cwd=dev_run.cwd, env=dev_run.env, capture_output=True, text=True, timeout=30,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def send_call(dev_run: DevRun, callee: str = CALLEE) -> str:
    """``cmvoice send notification`` from another process, as a user would; the instruction id."""
    argv = [COMMAND, "send", "notification", "--callee", callee, "--caller", CALLER,
            "--prompt", "Your parcel arrives today."]  # fmt: skip
    return run_cli(dev_run, argv).strip()


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    found = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found
