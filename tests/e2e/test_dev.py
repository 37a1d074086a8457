"""``cmvoice dev``: the whole system from one command, run as a user runs it, stopped cleanly."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil
import pytest
import requests

from cmvoice.embedded_redis import free_port
from tests.support.outcomes_to_file import OUTCOMES_FILE_ENV, RESULT_TASK, read_outcomes
from tests.support.stack import CALLEE, CALLER, wait_for

pytestmark = pytest.mark.slow

COMMAND = str(Path(sys.executable).with_name("cmvoice"))
ROOT = Path(__file__).resolve().parents[2]
#: Environment variable that marks every process a test starts, children and grandchildren
#: included (they inherit it): how the test finds anything left behind.
MARKER = "CMVOICE_DEV_TEST_MARKER_ID"
DEMO_CALLEES = ("+31612345601", "+31612345602", "+31612345603", "+31612345609")
#: The columns Flower's Tasks page must show: what a user needs to follow a call.
FLOWER_COLUMNS = ["name", "uuid", "state", "args", "result", "received", "started", "runtime",
                  "worker"]  # fmt: skip
#: Seconds the children of a killed ``cmvoice dev`` may take to go (they take milliseconds).
ORPHAN_DEADLINE_S = 5.0


@dataclass
class DevRun:
    """The ports, environment and working directory of one ``cmvoice dev`` run."""

    cwd: Path
    env: dict[str, str]
    marker: str
    ports: dict[str, int] = field(default_factory=dict)

    def argv(self, *extra: str) -> list[str]:
        return [
            COMMAND,
            "dev",
            "--receiver-port", str(self.ports["receiver"]),
            "--simulator-port", str(self.ports["simulator"]),
            "--flower-port", str(self.ports["flower"]),
            "--data-dir", str(self.cwd / "data"),
            *extra,
        ]  # fmt: skip

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


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def dev_run(tmp_path: Path) -> Iterator[DevRun]:
    """A clean environment: no CMVOICE_ or FLOWER_ variable (conftest sets some), free ports."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CMVOICE_", "FLOWER_"))
    }
    run = DevRun(cwd=tmp_path, env=env, marker=secrets.token_hex(8))
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
    yield run
    # A safety net, so that a failing test does not leave servers behind for the next ones.
    for process in run.leftovers():
        process.kill()


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


def start_dev(dev_run: DevRun, *extra: str) -> tuple[subprocess.Popen[str], Output]:
    """Start ``cmvoice dev`` and wait until it says it is up; fail with its log if it exits."""
    process = subprocess.Popen(
        dev_run.argv(*extra),
        cwd=dev_run.cwd,
        env=dev_run.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process)
    wait_for(lambda: "cmvoice dev is up" in output.text or process.poll() is not None, 60)
    assert process.poll() is None, output.text[-4000:]
    return process, output


def stop_dev(process: subprocess.Popen[str], output: Output) -> int:
    """Ctrl-C, as a user stops it; its exit code."""
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=45)
    output.join()
    print(output.text)  # shown by pytest only when the test fails
    return code


def send_call(dev_run: DevRun, callee: str = CALLEE) -> str:
    """``cmvoice send notification`` from another process, as a user would; the instruction id."""
    sent = subprocess.run(
        [COMMAND, "send", "notification", "--callee", callee, "--caller", CALLER,
         "--prompt", "Your parcel arrives today."],
        cwd=dev_run.cwd, env=dev_run.env, capture_output=True, text=True, timeout=30,
        check=False,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    return sent.stdout.strip()


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    found = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


def demo_rows(output: str) -> dict[str, list[str]]:
    """The demo table's rows by app: [instruction id, callee, attempts, result, digits]."""
    rows = {}
    for line in output.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.split("│")[1:-1]]
            if cells and cells[0] != "app":
                rows[cells[0]] = cells[1:]
    return rows


def test_dev_demo_from_a_clean_machine_shows_every_outcome_and_leaves_nothing_running(
    dev_run: DevRun,
) -> None:
    # Given a clean environment: no broker, no CM token, nothing listening on the chosen ports
    started = time.monotonic()

    # When the README's run command runs
    process = subprocess.Popen(
        dev_run.argv("--demo", "--demo-timeout", "45"),
        cwd=dev_run.cwd,
        env=dev_run.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process)
    try:
        code = process.wait(timeout=90)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(30)
    output.join()
    took = time.monotonic() - started
    print(output.text)  # shown by pytest only when the test fails

    # Then it exits 0 with one final outcome per call, the unanswered one after a redial
    assert code == 0, output.text[-4000:]
    rows = demo_rows(output.text)
    assert rows["Notification"][2:4] == ["1", "10 Finished"], rows
    assert rows["OTP"][2:4] == ["1", "10 Finished"], rows
    assert rows["DTMF"][2:] == ["1", "10 Finished", "2024"], rows
    assert rows["No answer"][2:4] == ["2", "9 Cancelled"], rows
    assert rows["Notification"][1] == "+31******601"
    # And no full number appears anywhere in its output
    for callee in DEMO_CALLEES:
        assert callee[1:] not in output.text
    # And nothing it started is still running, and every port is free again
    assert dev_run.leftovers() == []
    assert dev_run.busy_ports() == []
    assert took < 60, f"the demo took {took:.0f} s"


def test_flower_from_dev_needs_basic_auth_and_lists_dispatch_tasks_by_id_only(
    dev_run: DevRun,
) -> None:
    # Given `cmvoice dev` running, with Flower credentials from the configuration
    password = secrets.token_urlsafe(12)
    dev_run.env.update({"CMVOICE_FLOWER_USER": "ops", "CMVOICE_FLOWER_PASSWORD": password})
    process = subprocess.Popen(
        dev_run.argv(),
        cwd=dev_run.cwd,
        env=dev_run.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process)
    flower = f"http://127.0.0.1:{dev_run.ports['flower']}"
    try:
        wait_for(lambda: "cmvoice dev is up" in output.text or process.poll() is not None, 60)
        assert process.poll() is None, output.text[-4000:]
        assert password not in output.text, "a configured password is never printed"

        # Then Flower's API answers with basic auth, and refuses without it
        def workers() -> dict[str, object]:
            answer = requests.get(f"{flower}/api/workers", auth=("ops", password), timeout=5)
            return dict(answer.json())

        assert any(name.startswith("cmvoice-dev-") for name in wait_for(workers, 30))
        assert requests.get(f"{flower}/api/workers", timeout=5).status_code == 401
        wrong = requests.get(f"{flower}/api/workers", auth=("ops", "wrong"), timeout=5)
        assert wrong.status_code == 401

        # When a call is enqueued from another process, as a user would
        sent = subprocess.run(
            [COMMAND, "send", "notification", "--callee", CALLEE, "--caller", CALLER,
             "--prompt", "Your parcel arrives today."],
            cwd=dev_run.cwd, env=dev_run.env, capture_output=True, text=True, timeout=30,
            check=False,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        instruction_id = sent.stdout.strip()

        # Then Flower lists its dispatch task with the instruction id as the only argument
        def dispatch_task() -> dict[str, object] | None:
            answer = requests.get(
                f"{flower}/api/tasks",
                params={"taskname": "cmvoice.dispatch"},
                auth=("ops", password),
                timeout=5,
            )
            for task in answer.json().values():
                if instruction_id in str(task.get("args")):
                    return dict(task)
            return None

        task = wait_for(dispatch_task, 30)
        assert task["args"] == repr([instruction_id])
        assert task["kwargs"] in ("{}", {}, None)
        everything = requests.get(f"{flower}/api/tasks", auth=("ops", password), timeout=5).text
        for number in (CALLEE, CALLER):
            assert number[3:] not in everything

        # And its Tasks page has the columns that follow a call, args and result included
        page = requests.get(f"{flower}/tasks", auth=("ops", password), timeout=5)
        assert re.findall(r'<th data-column="(\w+)"', page.text) == FLOWER_COLUMNS

        # And the rows behind that page (JavaScript renders them from /tasks/datatable) carry
        # them; its search box finds the dispatch of one call by task name and instruction id
        def dispatch_row() -> dict[str, Any] | None:
            search = f"name:cmvoice.dispatch args:{instruction_id}"
            answer = requests.get(
                f"{flower}/tasks/datatable",
                params={"draw": "1", "start": "0", "length": "10", "search[value]": search,
                        "order[0][column]": "0", "columns[0][data]": "received",
                        "order[0][dir]": "desc"},
                auth=("ops", password), timeout=5,
            )  # fmt: skip
            rows: list[dict[str, Any]] = answer.json()["data"]
            return next((row for row in rows if row["state"] == "SUCCESS"), None)

        row = wait_for(dispatch_row, 30)
        assert row["uuid"] == task["uuid"]
        assert row["args"] == repr([instruction_id])
        assert row["result"].startswith("'placed call "), row["result"]
        assert row["worker"].startswith("cmvoice-dev-")
        for column in ("received", "started", "runtime"):
            assert isinstance(row[column], float), (column, row[column])

        # And the API's filters tell succeeded dispatches from failed tasks
        def tasks(**filters: str) -> dict[str, Any]:
            answer = requests.get(
                f"{flower}/api/tasks", params=filters, auth=("ops", password), timeout=5
            )
            return dict(answer.json())

        assert task["uuid"] in tasks(taskname="cmvoice.dispatch", state="SUCCESS")
        assert task["uuid"] not in tasks(state="FAILURE")
    finally:
        # When Ctrl-C arrives
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=45)
        output.join()
        print(output.text)  # shown by pytest only when the test fails

    # Then it stops cleanly: exit 0, nothing left running, every port free
    assert code == 0, output.text[-4000:]
    assert dev_run.leftovers() == []
    assert dev_run.busy_ports() == []


def test_dev_refuses_a_port_in_use_naming_the_option_that_moves_it(dev_run: DevRun) -> None:
    # Given something already listening on the Flower port
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", dev_run.ports["flower"]))
        busy.listen()

        # When cmvoice dev starts
        result = subprocess.run(
            dev_run.argv(),
            cwd=dev_run.cwd,
            env=dev_run.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # Then it fails at once, naming the port and the option, and starts nothing
    assert result.returncode == 1
    message = " ".join((result.stdout + result.stderr).split())
    assert f"port {dev_run.ports['flower']} is already in use" in message
    assert "--flower-port" in message
    assert dev_run.leftovers() == []


def test_dev_killed_with_sigkill_leaves_no_process_and_no_port_so_the_next_dev_starts(
    dev_run: DevRun,
) -> None:
    # Given `cmvoice dev` up, with every process it started (Redis, the simulator, the
    # receiver, the worker and its beat, Flower)
    process, output = start_dev(dev_run)
    started = psutil.Process(process.pid).children(recursive=True)
    assert len(alive(started)) >= 6, [" ".join(child.cmdline()[:4]) for child in started]

    # When it is killed with SIGKILL: no chance to stop anything itself
    killed_at = time.monotonic()
    process.kill()
    process.wait()
    output.join()

    # Then, within seconds, none of its processes is left and every port is free again
    wait_for(lambda: not alive(started) and not dev_run.busy_ports(), ORPHAN_DEADLINE_S, 0.05)
    took = time.monotonic() - killed_at
    print(f"{len(started)} processes gone and ports free {took:.2f} s after the SIGKILL")
    assert dev_run.leftovers() == []

    # And a second `cmvoice dev` on the same ports and data starts, and stops cleanly
    second, second_output = start_dev(dev_run)
    assert stop_dev(second, second_output) == 0, second_output.text[-4000:]
    assert dev_run.leftovers() == []
    assert dev_run.busy_ports() == []


def test_dev_include_runs_the_applications_result_task_in_its_worker(dev_run: DevRun) -> None:
    # Given a result task in a module of the application, with a queue of its own
    outcomes_file = dev_run.cwd / "outcomes.jsonl"
    dev_run.env.update(
        {
            "CMVOICE_RESULT_TASKS": RESULT_TASK,
            "CMVOICE_RESULT_QUEUE": "cmvoice.outcomes",
            OUTCOMES_FILE_ENV: str(outcomes_file),
            # The worker imports tests.support.outcomes_to_file from the repository.
            "PYTHONPATH": str(ROOT),
        }
    )

    # When `cmvoice dev --include` runs with that module, and a call is sent to it
    process, output = start_dev(
        dev_run, "--include", "tests.support.outcomes_to_file", "--time-scale", "0.05"
    )
    try:
        instruction_id = send_call(dev_run)

        # Then the call's final outcome reaches the application's task
        def final_outcome() -> dict[str, Any] | None:
            return next(
                (
                    outcome
                    for outcome in read_outcomes(outcomes_file)
                    if outcome["root_instruction_id"] == instruction_id and outcome["final"]
                ),
                None,
            )

        outcome = wait_for(final_outcome, 30)
        assert outcome["result_code"] == 10
    finally:
        code = stop_dev(process, output)

    # And the worker knew the task (no message dropped as unregistered), and all stopped
    assert "unregistered task" not in output.text
    assert code == 0, output.text[-4000:]
    assert dev_run.leftovers() == []
