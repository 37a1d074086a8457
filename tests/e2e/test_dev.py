"""``cmvoice dev``: the whole system from one command, run as a user runs it, stopped cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

import psutil
import pytest

from tests.support.dev_run import DevRun, Output, alive, start_dev, stop_dev
from tests.support.stack import wait_for

pytestmark = pytest.mark.slow

DEMO_CALLEES = ("+31612345601", "+31612345602", "+31612345603", "+31612345609")
#: Seconds the children of a killed ``cmvoice dev`` may take to go (they take milliseconds).
ORPHAN_DEADLINE_S = 5.0


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
