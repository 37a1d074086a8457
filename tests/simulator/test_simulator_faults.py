"""Fault injection: error rates, 429, read timeouts, latency, dropped or doubled callbacks."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
import requests

from cmvoice.client import VoiceApiClient
from cmvoice.errors import CmThrottled, CmUnavailable, OutcomeUnknown
from cmvoice.events import parse_event
from cmvoice.instructions import NotificationInstruction
from cmvoice.serving import ServerThread
from cmvoice.simulator import DEV_PRODUCT_TOKEN, Faults, SimulatorConfig, create_app
from tests.support.callback_sink import CallbackSink, wait_until

CALLER = "+31761234567"
CALLEE = "+31612345678"
HEADERS = {"X-CM-PRODUCTTOKEN": DEV_PRODUCT_TOKEN, "Content-Type": "application/json"}


def set_faults(sim_url: str, **faults: Any) -> None:
    requests.post(f"{sim_url}/_sim/faults", json=faults, timeout=5).raise_for_status()


def sim(sim_url: str, path: str) -> dict[str, Any]:
    result: dict[str, Any] = requests.get(f"{sim_url}/_sim/{path}", timeout=5).json()
    return result


def notification(callback_url: str | None = None, **fields: Any) -> NotificationInstruction:
    return NotificationInstruction(
        callee=CALLEE, caller=CALLER, prompt="hello.wav", callback_url=callback_url, **fields
    )


def send_many(sim_url: str, count: int) -> list[int]:
    """POST ``count`` valid instructions in a row; return the statuses in order."""
    body = notification().to_payload()
    with requests.Session() as session:
        return [
            session.post(
                f"{sim_url}/voiceapi/v2/Notification", json=body, headers=HEADERS, timeout=5
            ).status_code
            for _ in range(count)
        ]


def test_error_rates_are_honoured_over_hundreds_of_requests(sim_url: str) -> None:
    # Given 20% 429, 10% 500 and 10% 503, with a fixed seed
    set_faults(sim_url, fail_429=0.2, fail_500=0.1, fail_503=0.1, seed=42)

    # When 400 instructions are sent
    statuses = Counter(send_many(sim_url, 400))

    # Then each share is within 6 standard deviations of its rate (with the seed the counts
    # are fixed anyway; the bound only has to survive a change of random generator)
    for status, rate in ((429, 0.2), (500, 0.1), (503, 0.1), (200, 0.6)):
        expected = 400 * rate
        spread = 6 * (400 * rate * (1 - rate)) ** 0.5
        assert abs(statuses[status] - expected) <= spread, (status, statuses)
    assert sum(statuses.values()) == 400
    # And the simulator's own counts agree with what the client saw
    stats = sim(sim_url, "stats")
    assert stats["requests"]["by-status"] == {str(code): n for code, n in statuses.items()}
    assert stats["requests"]["faults-injected"] == {
        "429": statuses[429],
        "500": statuses[500],
        "503": statuses[503],
    }
    # And only the accepted instructions were placed (a 500 places nothing by default)
    assert stats["calls"]["total"] == statuses[200]


def test_the_same_seed_gives_the_same_sequence_of_answers(sim_url: str) -> None:
    set_faults(sim_url, fail_429=0.3, fail_503=0.3, seed=1234)
    first = send_many(sim_url, 60)
    set_faults(sim_url, fail_429=0.3, fail_503=0.3, seed=1234)
    second = send_many(sim_url, 60)

    assert first == second
    assert set(first) == {200, 429, 503}


def test_a_429_carries_retry_after_which_the_client_parses(
    client: VoiceApiClient, sim_url: str
) -> None:
    set_faults(sim_url, fail_429=1.0, retry_after_s=3)

    with pytest.raises(CmThrottled) as caught:
        client.send(notification())

    assert caught.value.retry_after_s == 3.0
    assert sim(sim_url, "stats")["calls"]["total"] == 0


def test_a_503_means_cm_unavailable_and_nothing_placed(
    client: VoiceApiClient, sim_url: str
) -> None:
    set_faults(sim_url, fail_503=1.0)

    with pytest.raises(CmUnavailable):
        client.send(notification())

    assert sim(sim_url, "stats")["calls"]["total"] == 0


@pytest.mark.parametrize("places_call", [False, True])
def test_a_500_is_an_unknown_outcome_and_may_have_placed_the_call(
    client: VoiceApiClient, sink: CallbackSink, sim_url: str, places_call: bool
) -> None:
    set_faults(sim_url, fail_500=1.0, places_call_on_500=places_call, timeout_places_call=1.0)

    with pytest.raises(OutcomeUnknown) as caught:
        client.send(notification(sink.url, instruction_id="ambiguous"))

    assert caught.value.status_code == 500
    listing = sim(sim_url, "calls")
    if places_call:
        assert listing["per-instruction-id"] == {"ambiguous": 1}
        assert listing["calls"][0]["answered-with"] == "500"
        [body] = sink.wait_for(1)
        assert parse_event(body).instruction_id == "ambiguous"
    else:
        assert listing["count"] == 0


def test_a_read_timeout_gives_outcome_unknown_and_the_call_may_still_be_placed(
    sim_url: str, sink: CallbackSink
) -> None:
    # Given a CM that holds requests past the client's read timeout, and places the call
    set_faults(sim_url, timeout_rate=1.0, hold_s=0.5, timeout_places_call=1.0)
    client = VoiceApiClient(DEV_PRODUCT_TOKEN, api_url=f"{sim_url}/voiceapi/v2", timeout=(2.0, 0.1))

    # When an instruction is sent
    try:
        with pytest.raises(OutcomeUnknown) as caught:
            client.send(notification(sink.url, instruction_id="lost-answer"))
    finally:
        client.close()

    # Then the client cannot know, but the call was placed and its callback arrives
    assert caught.value.may_have_placed
    [body] = sink.wait_for(1)
    assert parse_event(body).instruction_id == "lost-answer"
    [call] = sim(sim_url, "calls")["calls"]
    assert call["instruction-id"] == "lost-answer"
    assert call["answered-with"] == "timeout"
    # And the late answer, once the hold is over, is call-queued
    wait_until(lambda: sim(sim_url, "stats")["requests"]["by-status"] == {"200": 1})


def test_a_read_timeout_that_placed_nothing_answers_504_late_and_lists_nothing(
    sim_url: str,
) -> None:
    set_faults(sim_url, timeout_rate=1.0, hold_s=0.3, timeout_places_call=0.0)
    client = VoiceApiClient(DEV_PRODUCT_TOKEN, api_url=f"{sim_url}/voiceapi/v2", timeout=(2.0, 0.1))
    try:
        with pytest.raises(OutcomeUnknown):
            client.send(notification(instruction_id="never-placed"))
    finally:
        client.close()

    wait_until(lambda: sim(sim_url, "stats")["requests"]["by-status"] == {"504": 1})
    assert sim(sim_url, "calls")["count"] == 0


def test_added_latency_delays_every_answer(client: VoiceApiClient, sim_url: str) -> None:
    set_faults(sim_url, latency_ms=80)

    started = time.monotonic()
    client.send(notification())

    # A lower bound only: a sleep never ends early, however loaded the machine is.
    assert time.monotonic() - started >= 0.08


def test_duplicated_callbacks_are_really_delivered_twice(
    client: VoiceApiClient, sink: CallbackSink, sim_url: str
) -> None:
    set_faults(sim_url, duplicate_callbacks=1.0)

    call_ids = [client.send(notification(sink.url))[0].call_id for _ in range(3)]

    bodies = sink.wait_for(6)
    assert Counter(body["call-id"] for body in bodies) == {call_id: 2 for call_id in call_ids}
    for call_id in call_ids:
        copies = [body for body in bodies if body["call-id"] == call_id]
        assert copies[0] == copies[1]
    wait_until(lambda: sim(sim_url, "stats")["callbacks"]["delivered"] == 6)
    assert all(call["callback"]["duplicated"] for call in sim(sim_url, "calls")["calls"])


def test_dropped_callbacks_are_never_delivered(
    client: VoiceApiClient, sink: CallbackSink, sim_url: str
) -> None:
    set_faults(sim_url, drop_callbacks=1.0)

    for _ in range(3):
        client.send(notification(sink.url))

    wait_until(
        lambda: sim(sim_url, "stats")["callbacks"]["by-status"] == {"dropped": 3},
        what="three dropped callbacks",
    )
    assert sink.received == []


def test_faults_given_at_start_apply_until_reset() -> None:
    config = SimulatorConfig(time_scale=0.001, faults=Faults(fail_503=1.0))
    with ServerThread(create_app(config)) as server:
        assert send_many(server.url, 3) == [503, 503, 503]
        requests.post(f"{server.url}/_sim/reset", timeout=5).raise_for_status()
        assert send_many(server.url, 1) == [200]


def test_deleting_faults_brings_back_a_healthy_cm(sim_url: str) -> None:
    set_faults(sim_url, fail_503=1.0)
    assert send_many(sim_url, 1) == [503]

    requests.delete(f"{sim_url}/_sim/faults", timeout=5).raise_for_status()

    assert send_many(sim_url, 1) == [200]
