"""The simulator's Request-DTMF rules: attempts, terminators, digit limits and the regex."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from cmvoice.client import VoiceApiClient
from cmvoice.events import DtmfFinished, parse_event
from cmvoice.instructions import DtmfInstruction
from cmvoice.serving import ServerThread
from cmvoice.simulator import DEV_PRODUCT_TOKEN
from cmvoice.simulator.behaviour import dtmf_talk_s
from cmvoice.simulator.dtmf import default_keys, read_input, run_attempts
from tests.support.callback_sink import CallbackSink

CALLER = "+31761234567"
CALLEE = "+31612345678"


def dtmf(**fields: Any) -> DtmfInstruction:
    rules: dict[str, Any] = {"min_digits": 4, "max_digits": 4, "max_attempts": 3, **fields}
    return DtmfInstruction(callee=CALLEE, caller=CALLER, **rules)


# The rules themselves, as pure functions.


def test_input_ends_at_the_first_terminator_which_is_not_part_of_the_digits() -> None:
    assert read_input("1234#99", max_digits=8, terminators="#") == ("1234", True)


def test_input_ends_after_max_digits_keys_without_a_terminator() -> None:
    assert read_input("123456", max_digits=4, terminators="#") == ("1234", False)


def test_any_of_several_custom_terminators_ends_the_input() -> None:
    assert read_input("12*3", max_digits=8, terminators="*#") == ("12", True)
    assert read_input("12#3", max_digits=8, terminators="*#") == ("12", True)


def test_a_valid_first_attempt_gives_its_digits() -> None:
    result = run_attempts(dtmf(), ["1234#"])

    assert result.digits == "1234"
    assert len(result.attempts) == 1


def test_an_invalid_attempt_is_followed_by_another_until_one_is_valid() -> None:
    result = run_attempts(dtmf(), ["12#", "1234#"])

    assert result.digits == "1234"
    assert [attempt.valid for attempt in result.attempts] == [False, True]


def test_when_every_attempt_is_invalid_the_digits_are_empty() -> None:
    result = run_attempts(dtmf(max_attempts=3), ["1#", "22#", "333#", "4444#"])

    assert result.digits == ""
    # The fourth sequence is never read: max-attempts is 3.
    assert len(result.attempts) == 3


def test_attempts_past_the_given_keys_time_out_and_count_as_invalid() -> None:
    result = run_attempts(dtmf(max_attempts=3), ["12#"])

    assert result.digits == ""
    assert [attempt.keys for attempt in result.attempts] == ["12#", None, None]


def test_input_that_does_not_match_the_regex_is_refused() -> None:
    instruction = dtmf(regex="[5-9]*")

    result = run_attempts(instruction, ["1234#", "5678#"])

    assert result.digits == "5678"
    assert [attempt.valid for attempt in result.attempts] == [False, True]


def test_a_key_that_is_not_a_terminator_is_a_digit_and_must_match_the_regex() -> None:
    # With "*" as the only terminator, "#" is input, and the default regex wants digits only.
    instruction = dtmf(min_digits=2, max_digits=4, terminators="*", max_attempts=2)

    result = run_attempts(instruction, ["12#*", "12*"])

    assert [attempt.digits for attempt in result.attempts] == ["12#", "12"]
    assert result.digits == "12"


def test_the_default_callee_types_an_input_that_satisfies_the_rules() -> None:
    assert default_keys(dtmf()) == ["1234#"]
    assert default_keys(dtmf(min_digits=3, max_digits=3, regex="9+")) == ["999#"]
    assert run_attempts(dtmf(regex="0{4}"), default_keys(dtmf(regex="0{4}"))).digits == "0000"
    assert default_keys(dtmf(terminators="")) == ["1234"]


def test_talk_time_grows_with_the_attempts() -> None:
    instruction = dtmf()

    one = dtmf_talk_s(instruction, run_attempts(instruction, ["1234#"]))
    three = dtmf_talk_s(instruction, run_attempts(instruction, ["1#", "2#", "1234#"]))

    assert three > one


# The same rules, end to end through the simulator.


@pytest.fixture
def client(simulator: ServerThread) -> Iterator[VoiceApiClient]:
    requests.post(f"{simulator.url}/_sim/reset", timeout=5).raise_for_status()
    client = VoiceApiClient(DEV_PRODUCT_TOKEN, api_url=f"{simulator.url}/voiceapi/v2")
    yield client
    client.close()


@pytest.mark.parametrize(
    ("rules", "keys", "digits"),
    [
        pytest.param({}, ["1234#"], "1234", id="valid-first-attempt"),
        pytest.param({}, ["12#", "1234#"], "1234", id="invalid-then-valid"),
        pytest.param({}, ["1#", "12#", "123#"], "", id="all-attempts-invalid"),
        pytest.param({}, [], "", id="no-key-pressed"),
        pytest.param({"max_digits": 6}, ["1234#56"], "1234", id="terminator-excluded"),
        pytest.param({"terminators": "*"}, ["1234*"], "1234", id="custom-terminator"),
        pytest.param({"regex": "[5-9]+"}, ["1234#", "5678#"], "5678", id="regex-refusal"),
    ],
)
def test_the_dtmf_callback_carries_the_digits_of_the_first_valid_attempt(
    rules: dict[str, Any],
    keys: list[str],
    digits: str,
    client: VoiceApiClient,
    sink: CallbackSink,
    simulator: ServerThread,
) -> None:
    # Given a callee who will press these keys, one sequence per attempt
    requests.post(
        f"{simulator.url}/_sim/scenarios",
        json={"callee": CALLEE, "outcomes": [{"code": 10, "keys": keys}]},
        timeout=5,
    ).raise_for_status()

    # When a DTMF instruction calls them
    [queued] = client.send(dtmf(callback_url=sink.url, **rules))

    # Then the callback (and the simulator's listing) carry the expected digits
    [body] = sink.wait_for(1)
    event = parse_event(body)
    assert isinstance(event, DtmfFinished)
    assert event.call_id == queued.call_id
    assert event.result.code == 10
    assert event.digits == digits
    listing = requests.get(f"{simulator.url}/_sim/calls", timeout=5).json()
    assert listing["calls"][0]["digits"] == digits


def test_keys_that_are_not_dtmf_keys_are_refused_by_the_control_api(
    simulator: ServerThread,
) -> None:
    answer = requests.post(
        f"{simulator.url}/_sim/scenarios",
        json={"callee": CALLEE, "outcomes": [{"code": 10, "keys": ["12a#"]}]},
        timeout=5,
    )

    assert answer.status_code == 400
    assert "keys" in answer.json()["message"]
