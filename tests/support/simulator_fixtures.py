"""Fixtures of the simulator's own tests: one simulator per module, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from cmvoice.client import VoiceApiClient
from cmvoice.serving import ServerThread
from cmvoice.simulator import DEV_PRODUCT_TOKEN, SimulatorConfig, create_app
from tests.support.callback_sink import CallbackSink


@pytest.fixture(scope="module")
def simulator() -> Iterator[ServerThread]:
    """The simulator at 1/1000 of real time (a 60 s ring takes 60 ms); a module may override."""
    with ServerThread(create_app(SimulatorConfig(time_scale=0.001))) as server:
        yield server


@pytest.fixture
def sim_url(simulator: ServerThread) -> str:
    requests.post(f"{simulator.url}/_sim/reset", timeout=5).raise_for_status()
    return simulator.url


@pytest.fixture
def client(sim_url: str) -> Iterator[VoiceApiClient]:
    client = VoiceApiClient(DEV_PRODUCT_TOKEN, api_url=f"{sim_url}/voiceapi/v2")
    yield client
    client.close()


@pytest.fixture
def sink() -> Iterator[CallbackSink]:
    with CallbackSink() as sink:
        yield sink
