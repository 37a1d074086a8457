"""The simulator's HTTP contract: 401, 400, 404, 413, the control API, and many requests at once."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from cmvoice.client import VoiceApiClient
from cmvoice.errors import AuthenticationFailed, RequestRefused
from cmvoice.events import parse_event
from cmvoice.instructions import NotificationInstruction
from cmvoice.serving import ServerThread
from cmvoice.simulator import DEV_PRODUCT_TOKEN, SimulatorConfig, create_app
from tests.support.callback_sink import CallbackSink, wait_until

CALLER = "+31761234567"
CALLEE = "+31612345678"
OTHER_TOKEN = "0b6c54a2-5f7e-4d3c-9a61-2f0e8d7c6b5a"
NOTIFICATION = {"callee": CALLEE, "caller": CALLER, "prompt": "hello.wav"}


def post(url: str, body: Any = None, *, token: str | None = DEV_PRODUCT_TOKEN) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-CM-PRODUCTTOKEN"] = token
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return requests.post(url, data=data, headers=headers, timeout=5)


def stats(sim_url: str) -> dict[str, Any]:
    result: dict[str, Any] = requests.get(f"{sim_url}/_sim/stats", timeout=5).json()
    return result


def test_a_request_without_a_product_token_is_refused_with_401(sim_url: str) -> None:
    answer = post(f"{sim_url}/voiceapi/v2/Notification", NOTIFICATION, token=None)

    assert answer.status_code == 401
    assert "X-CM-PRODUCTTOKEN" in answer.json()["message"]
    assert stats(sim_url)["calls"]["total"] == 0


def test_a_wrong_product_token_is_refused_and_never_echoed(sim_url: str) -> None:
    client = VoiceApiClient(OTHER_TOKEN, api_url=f"{sim_url}/voiceapi/v2")
    try:
        with pytest.raises(AuthenticationFailed) as caught:
            client.send_payload("Notification", NOTIFICATION)
    finally:
        client.close()

    assert caught.value.status_code == 401
    assert OTHER_TOKEN not in caught.value.body
    assert stats(sim_url)["requests"]["by-status"] == {"401": 1}


def test_configured_tokens_replace_the_dev_token_and_match_in_any_case() -> None:
    config = SimulatorConfig(time_scale=0.001, tokens=(OTHER_TOKEN,))
    with ServerThread(create_app(config)) as server:
        url = f"{server.url}/voiceapi/v2/Notification"
        assert post(url, NOTIFICATION, token=OTHER_TOKEN.upper()).status_code == 200
        assert post(url, NOTIFICATION, token=DEV_PRODUCT_TOKEN).status_code == 401


def test_a_broken_rule_is_refused_with_400_and_a_message_naming_the_field(
    client: VoiceApiClient, sim_url: str
) -> None:
    with pytest.raises(RequestRefused) as caught:
        client.send_payload("Notification", {**NOTIFICATION, "callee": "0612345678"})

    assert caught.value.status_code == 400
    assert caught.value.cm_message.startswith("callee: must be an international number")
    # The number is masked in CM-style messages too.
    assert "0612345678" not in caught.value.body
    assert stats(sim_url)["calls"]["total"] == 0


def test_a_cross_field_rule_names_its_field(client: VoiceApiClient) -> None:
    dtmf = {"callee": CALLEE, "caller": CALLER, "min-digits": 5, "max-digits": 2}

    with pytest.raises(RequestRefused) as caught:
        client.send_payload("DTMF", {**dtmf, "max-attempts": 3})

    assert caught.value.status_code == 400
    assert "min-digits" in caught.value.cm_message


def test_every_broken_rule_is_listed_with_field_rule_and_masked_value(sim_url: str) -> None:
    answer = post(f"{sim_url}/voiceapi/v2/OTP", {"callee": CALLEE, "code": "12 34"})

    assert answer.status_code == 400
    errors = {error["field"]: error for error in answer.json()["errors"]}
    assert set(errors) == {"caller", "code"}
    assert errors["code"]["value"] == "<hidden, 5 characters>"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"{not json", "malformed JSON", id="malformed"),
        pytest.param(b"", "malformed JSON", id="empty"),
        pytest.param(b"[]", "must be a JSON object", id="array"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused_with_400(
    sim_url: str, body: bytes, expected: str
) -> None:
    answer = post(f"{sim_url}/voiceapi/v2/Notification", body)

    assert answer.status_code == 400
    assert expected in answer.json()["message"]


def test_a_refused_number_gets_the_4xx_it_was_given_every_time_and_no_call(
    client: VoiceApiClient, sim_url: str
) -> None:
    # Given CM told to refuse one number (a valid one: cmvoice's checks accept it)
    other = "+31612345601"
    answer = requests.post(
        f"{sim_url}/_sim/refusals", json={"callee": "0031612345678", "status": 422}, timeout=5
    )
    assert answer.json()["callee"] == CALLEE

    # When instructions go to it twice, and to another number once
    refusals = []
    for _ in range(2):
        with pytest.raises(RequestRefused) as caught:
            client.send_payload("Notification", NOTIFICATION)
        refusals.append(caught.value)
    client.send_payload("Notification", {**NOTIFICATION, "callee": other})

    # Then both are refused with that status and a CM-style message naming the field, the
    # number masked, and only the other number was called
    assert [refusal.status_code for refusal in refusals] == [422, 422]
    assert refusals[0].cm_message.startswith("callee: CM does not call this number")
    assert "+31******678" in refusals[0].cm_message
    assert CALLEE[1:] not in refusals[0].body
    placed = requests.get(f"{sim_url}/_sim/calls", timeout=5).json()["calls"]
    assert [call["callee"] for call in placed] == [other]
    listed = requests.get(f"{sim_url}/_sim/refusals", timeout=5).json()["refused"]
    assert listed[CALLEE]["status"] == 422

    # And once the refusal is deleted, the number is called again
    requests.delete(
        f"{sim_url}/_sim/refusals", params={"callee": CALLEE}, timeout=5
    ).raise_for_status()
    assert client.send_payload("Notification", NOTIFICATION)[0].success


def test_an_unknown_app_is_refused_with_404(client: VoiceApiClient, sim_url: str) -> None:
    with pytest.raises(RequestRefused) as caught:
        client.send_payload("FlowBuilder", NOTIFICATION)

    assert caught.value.status_code == 404
    assert "Notification" in caught.value.cm_message
    assert post(f"{sim_url}/voiceapi/v3/Notification", NOTIFICATION).status_code == 404


def test_app_paths_match_in_any_case_like_cm(sim_url: str) -> None:
    assert post(f"{sim_url}/voiceapi/v2/notification", NOTIFICATION).status_code == 200


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_past_the_size_bound_is_refused_with_413(sim_url: str, chunked: bool) -> None:
    big = json.dumps({**NOTIFICATION, "prompt": "x" * 70_000}).encode()
    headers = {"X-CM-PRODUCTTOKEN": DEV_PRODUCT_TOKEN, "Content-Type": "application/json"}
    # A generator makes requests send the body chunked, without a Content-Length.
    data = iter([big[:40_000], big[40_000:]]) if chunked else big

    answer = requests.post(
        f"{sim_url}/voiceapi/v2/Notification", data=data, headers=headers, timeout=5
    )

    assert answer.status_code == 413
    assert "bytes" in answer.json()["message"]
    assert stats(sim_url)["calls"]["total"] == 0


def test_a_configured_prefix_serves_the_apps_there_only() -> None:
    config = SimulatorConfig(time_scale=0.001, prefix="cm/voice/")
    with ServerThread(create_app(config)) as server:
        assert post(
            f"{server.url}/cm/voice/OTP", {"callee": CALLEE, "caller": CALLER, "code": "12"}
        ).ok
        assert post(f"{server.url}/voiceapi/v2/OTP", NOTIFICATION).status_code == 404


def test_the_listing_counts_calls_per_instruction_id_and_requests_per_status(
    client: VoiceApiClient, sim_url: str
) -> None:
    # Given the same instruction-id sent twice (CM does not de-duplicate), and one refusal
    instruction = NotificationInstruction(instruction_id="twice", **NOTIFICATION)
    client.send(instruction)
    client.send(instruction)
    client.send(NotificationInstruction(instruction_id="once", **NOTIFICATION))
    with pytest.raises(RequestRefused):
        client.send_payload("Notification", {"prompt": "no numbers"})

    # Then the listing shows the duplicate placement, and the requests by status
    listing = requests.get(f"{sim_url}/_sim/calls", timeout=5).json()
    assert listing["count"] == 3
    assert listing["per-instruction-id"] == {"twice": 2, "once": 1}
    assert listing["requests"]["by-status"] == {"200": 3, "400": 1}
    only = requests.get(f"{sim_url}/_sim/calls?instruction-id=once", timeout=5).json()
    assert [call["instruction-id"] for call in only["calls"]] == ["once"]
    by_callee = requests.get(
        f"{sim_url}/_sim/calls", params={"callee": "0031612345678"}, timeout=5
    ).json()
    assert by_callee["count"] == 3


def test_reset_clears_calls_scenarios_refusals_faults_and_counters(
    client: VoiceApiClient, sim_url: str
) -> None:
    client.send(NotificationInstruction(**NOTIFICATION))
    requests.post(
        f"{sim_url}/_sim/scenarios", json={"callee": CALLEE, "outcomes": [{"code": 9}]}, timeout=5
    ).raise_for_status()
    requests.post(f"{sim_url}/_sim/faults", json={"latency-ms": 5}, timeout=5).raise_for_status()
    requests.post(f"{sim_url}/_sim/refusals", json={"callee": CALLEE}, timeout=5).raise_for_status()

    requests.post(f"{sim_url}/_sim/reset", timeout=5).raise_for_status()

    after = stats(sim_url)
    assert after["calls"]["total"] == 0
    assert after["requests"]["total"] == 0
    assert requests.get(f"{sim_url}/_sim/scenarios", timeout=5).json() == {"pending": {}}
    assert requests.get(f"{sim_url}/_sim/faults", timeout=5).json()["latency-ms"] == 0
    assert requests.get(f"{sim_url}/_sim/refusals", timeout=5).json() == {"refused": {}}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/_sim/scenarios", {"callee": "0612345678", "outcomes": [{"code": 9}]}, "callee"),
        ("/_sim/scenarios", {"callee": CALLEE, "outcomes": []}, "outcomes"),
        ("/_sim/scenarios", {"callee": CALLEE, "outcomes": [{"cod": 9}]}, "outcomes.0.code"),
        ("/_sim/refusals", {"callee": CALLEE, "status": 503}, "status"),
        ("/_sim/refusals", {"status": 400}, "callee"),
        ("/_sim/faults", {"fail-429": 1.5}, "fail-429"),
        ("/_sim/faults", {"fail-429": 0.6, "fail_503": 0.6}, "must add up to 1 or less"),
        ("/_sim/faults", {"latency": 5}, "latency"),
    ],
)
def test_the_control_api_refuses_bad_bodies_with_a_message_naming_the_field(
    sim_url: str, path: str, body: dict[str, Any], field: str
) -> None:
    answer = requests.post(f"{sim_url}{path}", json=body, timeout=5)

    assert answer.status_code == 400
    assert field in answer.json()["message"]


def test_the_faults_in_force_are_shown_with_their_defaults(sim_url: str) -> None:
    set_answer = requests.post(
        f"{sim_url}/_sim/faults", json={"fail_503": 0.25, "seed": 3}, timeout=5
    )

    shown = requests.get(f"{sim_url}/_sim/faults", timeout=5).json()
    assert set_answer.json() == shown
    assert shown["fail-503"] == 0.25
    assert shown["seed"] == 3
    assert shown["hold-s"] == 30.0
    assert shown["timeout-places-call"] == 0.5
    assert shown["retry-after-s"] == 1


def test_request_handling_never_waits_for_callback_delivery(sim_url: str) -> None:
    # Given a callback receiver that answers nothing until released
    with CallbackSink() as sink:
        sink.hold()
        payload = {**NOTIFICATION, "callback-url": sink.url}

        # When 100 instructions arrive at once from 8 threads
        def send(number: int) -> int:
            body = {**payload, "instruction-id": f"burst-{number}"}
            return post(f"{sim_url}/voiceapi/v2/Notification", body).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(send, range(100)))

        # Then every one was accepted while no callback had been answered yet
        assert statuses == [200] * 100
        assert sink.accepted_bodies() == []

        # And once the receiver answers, every callback arrives, once per call
        sink.release()
        bodies = sink.wait_for(100)
    call_ids = {parse_event(body).call_id for body in bodies}
    assert len(call_ids) == 100
    wait_until(lambda: stats(sim_url)["callbacks"]["delivered"] == 100)


def test_health_answers_while_serving(sim_url: str) -> None:
    assert requests.get(f"{sim_url}/_sim/health", timeout=5).json()["status"] == "ok"
