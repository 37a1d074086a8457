"""Callback delivery: retries on 5xx and connection errors, no retry on 4xx, a bounded give-up."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from cmvoice.client import VoiceApiClient
from cmvoice.events import parse_event
from cmvoice.instructions import OtpInstruction
from cmvoice.serving import ServerThread
from cmvoice.simulator import DEV_PRODUCT_TOKEN, SimulatorConfig, create_app
from tests.support.callback_sink import CallbackSink, wait_until

CALLER = "+31761234567"
CALLEE = "+31612345678"
CODE = "846213"
#: Retries start at 10 ms and stop after a second, so giving up is quick to observe.
CONFIG = SimulatorConfig(
    time_scale=0.001, callback_retry_for_s=1.0, callback_first_backoff_s=0.01, seed=5
)


@pytest.fixture(scope="module")
def simulator() -> Iterator[ServerThread]:
    with ServerThread(create_app(CONFIG)) as server:
        yield server


def otp(callback_url: str) -> OtpInstruction:
    return OtpInstruction(callee=CALLEE, caller=CALLER, code=CODE, callback_url=callback_url)


def only_call(sim_url: str) -> dict[str, Any]:
    [call] = requests.get(f"{sim_url}/_sim/calls", timeout=5).json()["calls"]
    callback: dict[str, Any] = call["callback"]
    return callback


def closed_port_url() -> str:
    """A URL on a local port where nothing listens: every connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/callbacks"


def test_a_callback_answered_with_5xx_is_retried_until_accepted(
    client: VoiceApiClient, sim_url: str
) -> None:
    # Given a receiver that fails twice before it accepts
    with CallbackSink(statuses=[503, 500]) as sink:
        # When a call finishes
        [queued] = client.send(otp(sink.url))

        # Then the same callback is posted three times, and the third is accepted
        [body] = sink.wait_for(1)
        assert [item.status for item in sink.received] == [503, 500, 204]
        assert all(item.body == body for item in sink.received)
    assert parse_event(body).call_id == queued.call_id
    wait_until(lambda: only_call(sim_url)["status"] == "delivered")
    assert only_call(sim_url)["attempts"] == 3


def test_a_callback_refused_with_4xx_is_not_retried(client: VoiceApiClient, sim_url: str) -> None:
    with CallbackSink(statuses=[404]) as sink:
        client.send(otp(sink.url))

        wait_until(lambda: only_call(sim_url)["status"] == "refused")
        assert [item.status for item in sink.received] == [404]
    assert only_call(sim_url)["attempts"] == 1


def test_delivery_gives_up_after_the_retry_time_with_a_log_line_and_no_personal_data(
    client: VoiceApiClient, sim_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a callback URL where nothing listens
    caplog.set_level(logging.DEBUG, logger="cmvoice")

    # When a call finishes
    [queued] = client.send(otp(closed_port_url()))

    # Then delivery is retried, then given up within the configured second (plus slack)
    wait_until(lambda: only_call(sim_url)["status"] == "failed", timeout_s=5.0)
    assert only_call(sim_url)["attempts"] > 1
    gave_up = [record for record in caplog.records if "given up" in record.getMessage()]
    assert len(gave_up) == 1
    assert gave_up[0].levelno == logging.WARNING
    assert queued.call_id in gave_up[0].getMessage()
    assert "+31******678" in gave_up[0].getMessage()
    # And no log line ever held the full number, the OTP code or the product token
    for record in caplog.records:
        text = record.getMessage()
        assert CALLEE not in text
        assert CODE not in text
        assert DEV_PRODUCT_TOKEN not in text


def test_a_persistently_failing_receiver_is_given_up_too(
    client: VoiceApiClient, sim_url: str
) -> None:
    with CallbackSink(statuses=[503] * 1000) as sink:
        client.send(otp(sink.url))

        wait_until(lambda: only_call(sim_url)["status"] == "failed", timeout_s=5.0)
        posts = len(sink.received)
    assert posts == only_call(sim_url)["attempts"] > 1
