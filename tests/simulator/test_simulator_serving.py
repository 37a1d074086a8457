"""ServerThread, and ``cmvoice simulator`` as a command."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import requests
from fastapi import FastAPI
from typer.testing import CliRunner

from cmvoice.cli import app as cli_app
from cmvoice.serving import ServerThread
from cmvoice.simulator import DEV_PRODUCT_TOKEN


def hello_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_port_zero_binds_a_free_port_and_the_url_names_it() -> None:
    server = ServerThread(hello_app())

    with server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert requests.get(f"{server.url}/hello", timeout=5).json() == {"hello": "world"}

    # Once stopped, nothing listens there any more.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/hello", timeout=5)


def test_start_returns_a_server_that_accepts_connections_at_once() -> None:
    server = ServerThread(hello_app()).start()
    try:
        assert server.running
        with socket.create_connection(("127.0.0.1", server.port), timeout=1):
            pass
    finally:
        server.stop()
    server.stop()  # a second stop is harmless
    assert not server.running


def test_a_given_port_is_used() -> None:
    port = free_port()

    with ServerThread(hello_app(), port=port) as server:
        assert server.port == port
        assert requests.get(f"http://127.0.0.1:{port}/hello", timeout=5).ok


def test_an_app_that_fails_at_startup_makes_start_raise() -> None:
    @asynccontextmanager
    async def broken(app: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield  # pragma: no cover

    server = ServerThread(FastAPI(lifespan=broken), log_level="critical")

    with pytest.raises(RuntimeError, match="failed to start"):
        server.start()


def test_the_simulator_command_refuses_fault_rates_that_cannot_add_up() -> None:
    result = CliRunner().invoke(cli_app, ["simulator", "--fail-429", "0.7", "--fail-503", "0.5"])

    assert result.exit_code == 2
    assert "add up to 1 or less" in result.output


def test_the_simulator_command_lists_its_options() -> None:
    result = CliRunner().invoke(cli_app, ["simulator", "--help"], terminal_width=200)

    assert result.exit_code == 0
    for option in (
        "--time-scale",
        "--token",
        "--prefix",
        "--callback-url",
        "--fail-429",
        "--timeout-rate",
        "--latency-ms",
        "--drop-callbacks",
        "--seed",
    ):
        assert option in result.output


@pytest.fixture
def simulator_process() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from cmvoice.cli import main; main()",
            "simulator",
            "--port",
            str(port),
            "--time-scale",
            "0.001",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"{url}/_sim/health", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_simulator_command_serves_cm_with_the_dev_token(simulator_process: str) -> None:
    body = {"callee": "+31612345678", "caller": "+31761234567", "prompt": "hello.wav"}
    url = f"{simulator_process}/voiceapi/v2/Notification"

    token = {"X-CM-PRODUCTTOKEN": DEV_PRODUCT_TOKEN}
    accepted = requests.post(url, json=body, headers=token, timeout=5)
    refused = requests.post(url, json=body, timeout=5)

    assert accepted.json()["type"] == "call-queued"
    assert refused.status_code == 401
