"""End to end: VoiceApiClient -> simulator -> callback received and parsed, per app and code."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import requests

from cmvoice.client import VoiceApiClient
from cmvoice.events import (
    DtmfFinished,
    NotificationFinished,
    OtpFinished,
    parse_event,
)
from cmvoice.instructions import (
    DtmfInstruction,
    Instruction,
    NotificationInstruction,
    OtpInstruction,
    PromptType,
)
from cmvoice.serving import ServerThread
from cmvoice.simulator import DEV_PRODUCT_TOKEN, SimulatorConfig, create_app
from tests.support.callback_sink import CallbackSink, wait_until

CALLER = "+31761234567"
#: Callees whose last two digits select each result code under the default rule.
CALLEES = {9: "+31612345609", 10: "+31612345678", 11: "+31612345611", 12: "+31612345612"}
DESCRIPTIONS = {9: "Cancelled", 10: "Finished", 11: "Failed", 12: "Call rejected"}
SIP_CODES = {9: "487", 10: "BYE", 11: "503", 12: "603"}
EVENT_CLASSES = {"notification": NotificationFinished, "otp": OtpFinished, "dtmf": DtmfFinished}
#: 1/1000: a 60 s ring takes 60 ms.
TIME_SCALE = 0.001
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def make_instruction(kind: str, callee: str, callback_url: str, **fields: Any) -> Instruction:
    common: dict[str, Any] = {
        "instruction_id": f"test-{kind}-{callee[-2:]}",
        "callee": callee,
        "caller": CALLER,
        "callback_url": callback_url,
        **fields,
    }
    if kind == "notification":
        return NotificationInstruction(
            **{"prompt": "Your parcel arrives today.", "prompt_type": PromptType.TTS, **common}
        )
    if kind == "otp":
        return OtpInstruction(**{"code": "123456", "intro_prompt": "Your code follows.", **common})
    return DtmfInstruction(
        prompt="Enter your PIN, then hash.", min_digits=4, max_digits=4, max_attempts=3, **common
    )


def calls(sim_url: str, **query: str) -> dict[str, Any]:
    response = requests.get(f"{sim_url}/_sim/calls", params=query, timeout=5)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize("code", [9, 10, 11, 12])
@pytest.mark.parametrize("kind", ["notification", "otp", "dtmf"])
def test_each_app_and_result_code_ends_in_the_documented_callback(
    kind: str, code: int, client: VoiceApiClient, sink: CallbackSink, sim_url: str
) -> None:
    # Given an instruction to a callee whose last digits select the result code
    callee = CALLEES[code]
    instruction = make_instruction(kind, callee, sink.url)

    # When it is sent through the real client
    [queued] = client.send(instruction)

    # Then CM's call-queued answer comes back
    assert queued.type == "call-queued"
    assert _UUID.fullmatch(queued.call_id)
    assert queued.instruction_id == instruction.instruction_id
    assert queued.callee == callee
    assert queued.caller == CALLER
    assert queued.success is True

    # And exactly one callback arrives, which parse_event reads as the app's event
    [body] = sink.wait_for(1)
    event = parse_event(body)
    assert isinstance(event, EVENT_CLASSES[kind])
    assert event.type == f"{kind}-finished"
    assert event.call_id == queued.call_id
    assert event.instruction_id == instruction.instruction_id
    assert event.callee == callee
    assert event.caller == CALLER
    assert event.result.code == code
    assert event.result.description == DESCRIPTIONS[code]
    assert event.result.sip_disconnect_code == SIP_CODES[code]
    for moment in (event.started_on, event.finished_on):
        assert moment.utcoffset() == timedelta(0)
    if code == 10:
        assert event.answered_on is not None
        assert event.answered_on.utcoffset() == timedelta(0)
        assert event.started_on <= event.answered_on <= event.finished_on
    else:
        assert body.get("answered-on") is None
        assert event.answered_on is None
        assert event.started_on <= event.finished_on
    if isinstance(event, DtmfFinished):
        # The default callee types a valid input: 1234 and the terminator.
        assert event.digits == ("1234" if code == 10 else "")

    # And the simulator lists the call once, under its instruction-id, delivered
    # (the sink records the body a moment before the simulator reads the sink's answer)
    wait_until(lambda: calls(sim_url)["calls"][0]["callback"]["status"] == "delivered")
    listing = calls(sim_url)
    assert listing["count"] == 1
    assert listing["per-instruction-id"] == {instruction.instruction_id: 1}
    [call] = listing["calls"]
    assert call["call-id"] == queued.call_id
    assert call["app"] == instruction.app
    assert call["callee"] == callee
    assert call["code"] == code


def test_an_anonymous_call_reports_the_caller_as_anonymous(
    client: VoiceApiClient, sink: CallbackSink
) -> None:
    client.send(make_instruction("notification", CALLEES[10], sink.url, anonymous=True))

    [body] = sink.wait_for(1)

    assert parse_event(body).caller == "anonymous"


def test_an_unanswered_call_rings_for_the_max_ringing_timeout(
    client: VoiceApiClient, sink: CallbackSink
) -> None:
    # Given calls nobody answers, one with a 20 s ringing timeout and one with CM's default
    client.send(make_instruction("otp", CALLEES[9], sink.url, max_ringing_timeout=20))
    client.send(make_instruction("dtmf", CALLEES[9], sink.url))

    # Then each rang for its timeout (scaled: 20 ms and 60 ms, to the millisecond)
    rang_ms = {}
    for body in sink.wait_for(2):
        event = parse_event(body)
        assert not isinstance(event, DtmfFinished) or event.digits == ""
        rang = event.finished_on - event.started_on  # type: ignore[union-attr]
        rang_ms[event.type] = rang.total_seconds() * 1000
    assert rang_ms["otp-finished"] == pytest.approx(20, abs=1.5)
    assert rang_ms["dtmf-finished"] == pytest.approx(60, abs=1.5)


def test_talk_time_follows_the_prompt_length_and_replays(
    client: VoiceApiClient, sink: CallbackSink
) -> None:
    # Given a 150-character TTS prompt (10 s at 15 characters a second), once and thrice
    prompt = "x" * 150
    client.send(make_instruction("notification", CALLEES[10], sink.url, prompt=prompt))
    client.send(
        NotificationInstruction(
            instruction_id="replayed",
            callee=CALLEES[10],
            caller=CALLER,
            prompt=prompt,
            prompt_type=PromptType.TTS,
            max_replays=2,
            auto_replay=True,
            callback_url=sink.url,
        )
    )

    # Then the answered part of each call lasts 10 ms and 30 ms (scaled)
    talked_ms = {}
    for body in sink.wait_for(2):
        event = parse_event(body)
        assert isinstance(event, NotificationFinished)
        assert event.answered_on is not None
        talked_ms[event.instruction_id] = (
            event.finished_on - event.answered_on
        ).total_seconds() * 1000
    assert talked_ms["test-notification-78"] == pytest.approx(10, abs=1.5)
    assert talked_ms["replayed"] == pytest.approx(30, abs=1.5)


def test_the_default_callback_url_is_used_when_the_instruction_has_none(
    sink: CallbackSink,
) -> None:
    config = SimulatorConfig(time_scale=TIME_SCALE, default_callback_url=sink.url)
    with ServerThread(create_app(config)) as server:
        client = VoiceApiClient(DEV_PRODUCT_TOKEN, api_url=f"{server.url}/voiceapi/v2")
        try:
            [queued] = client.send(
                NotificationInstruction(callee=CALLEES[10], caller=CALLER, prompt="hello.wav")
            )
        finally:
            client.close()
        [body] = sink.wait_for(1)

    assert parse_event(body).call_id == queued.call_id


def test_queued_scenarios_decide_successive_calls_then_the_default_rule_applies(
    client: VoiceApiClient, sink: CallbackSink, sim_url: str
) -> None:
    # Given three outcomes queued for a number whose default is 10 (the number is given
    # in the 00 form: the simulator normalizes it)
    answer = requests.post(
        f"{sim_url}/_sim/scenarios",
        json={"callee": "0031612345678", "outcomes": [{"code": 9}, {"code": 12}, {"code": 11}]},
        timeout=5,
    )
    assert answer.status_code == 200
    assert answer.json() == {"callee": CALLEES[10], "queued": 3}

    # When four calls are made to it
    for number in range(4):
        client.send(
            NotificationInstruction(
                instruction_id=f"call-{number}",
                callee=CALLEES[10],
                caller=CALLER,
                prompt="hello.wav",
                callback_url=sink.url,
            )
        )

    # Then they end as queued, and the fourth by the default rule
    codes = {}
    for body in sink.wait_for(4):
        event = parse_event(body)
        codes[event.instruction_id] = event.result.code  # type: ignore[union-attr]
    assert codes == {"call-0": 9, "call-1": 12, "call-2": 11, "call-3": 10}
    pending = requests.get(f"{sim_url}/_sim/scenarios", timeout=5).json()
    assert pending == {"pending": {}}


def test_deleting_scenarios_brings_back_the_default_rule(
    client: VoiceApiClient, sink: CallbackSink, sim_url: str
) -> None:
    requests.post(
        f"{sim_url}/_sim/scenarios",
        json={"callee": CALLEES[10], "outcomes": [{"code": 12}]},
        timeout=5,
    ).raise_for_status()
    pending = requests.get(f"{sim_url}/_sim/scenarios", timeout=5).json()["pending"]
    assert pending == {CALLEES[10]: [{"code": 12}]}

    requests.delete(f"{sim_url}/_sim/scenarios", timeout=5).raise_for_status()
    client.send(make_instruction("notification", CALLEES[10], sink.url))

    [body] = sink.wait_for(1)
    assert parse_event(body).result.code == 10  # type: ignore[union-attr]


@pytest.mark.parametrize("control", ["scenarios", "refusals"])
def test_clearing_one_callee_takes_a_number_and_refuses_anything_else(
    sim_url: str, control: str
) -> None:
    # Given a scenario and a refusal for one callee
    requests.post(
        f"{sim_url}/_sim/scenarios",
        json={"callee": CALLEES[11], "outcomes": [{"code": 12}]},
        timeout=5,
    ).raise_for_status()
    requests.post(
        f"{sim_url}/_sim/refusals", json={"callee": CALLEES[11]}, timeout=5
    ).raise_for_status()

    # When one is cleared with a ?callee= that is no number, then in the national form
    bad = requests.delete(f"{sim_url}/_sim/{control}", params={"callee": "tomorrow"}, timeout=5)
    national = "0" + CALLEES[11].removeprefix("+31")
    also_bad = requests.delete(f"{sim_url}/_sim/{control}", params={"callee": national}, timeout=5)
    good = requests.delete(f"{sim_url}/_sim/{control}", params={"callee": CALLEES[11]}, timeout=5)

    # Then the bad ones are a 400 naming the parameter, and only the number clears it
    assert (bad.status_code, also_bad.status_code) == (400, 400)
    assert bad.json()["message"].startswith("callee: ")
    assert good.status_code == 200
    listed = requests.get(f"{sim_url}/_sim/{control}", timeout=5).json()
    assert CALLEES[11] not in str(listed)


def test_a_scenario_may_set_a_code_outside_the_documented_ones(
    client: VoiceApiClient, sink: CallbackSink, sim_url: str
) -> None:
    # CM may send other codes; the simulator lets a test produce one.
    requests.post(
        f"{sim_url}/_sim/scenarios",
        json={"callee": CALLEES[10], "outcomes": [{"code": 13, "description": "Busy"}]},
        timeout=5,
    ).raise_for_status()
    client.send(make_instruction("otp", CALLEES[10], sink.url))

    [body] = sink.wait_for(1)
    event = parse_event(body)
    assert event.result.code == 13  # type: ignore[union-attr]
    assert event.result.description == "Busy"  # type: ignore[union-attr]
    assert event.result.result_code is None  # type: ignore[union-attr]
    assert event.answered_on is None  # type: ignore[union-attr]


def test_the_otp_code_is_never_listed_nor_sent_back(
    client: VoiceApiClient, sink: CallbackSink, sim_url: str
) -> None:
    client.send(make_instruction("otp", CALLEES[10], sink.url, code="908172"))

    [body] = sink.wait_for(1)

    assert "908172" not in str(body)
    assert "908172" not in str(calls(sim_url))
