"""Properties of the wire models, over generated instructions: round trips and clean refusals."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from cmvoice.errors import InvalidInstruction
from cmvoice.instructions import (
    DtmfInstruction,
    NotificationInstruction,
    OtpInstruction,
    parse_instruction,
)

MODELS: dict[str, type[BaseModel]] = {
    "notification": NotificationInstruction,
    "otp": OtpInstruction,
    "dtmf": DtmfInstruction,
}
#: Valid numbers of several countries, in each accepted spelling.
NUMBERS = [
    spelling
    for number in (
        "+31612345678",
        "+31761234567",
        "+4915123456789",
        "+14155552671",
        "+442079460000",
        "+33612345678",
        "+5511987654321",
        "+61412345678",
    )
    for spelling in (number, "00" + number[1:])
] + ["+31 6 1234 5678", "0031 (76) 123-4567"]

FAST = settings(max_examples=150, deadline=None)

numbers = st.sampled_from(NUMBERS)
prompt_types = st.sampled_from(["TTS", "TTS_SSML", "File", "tts", "tts_ssml", "file", "Tts"])
voices = st.fixed_dictionaries(
    {
        "language": st.from_regex(r"[a-z]{2}-[A-Z]{2}", fullmatch=True),
        "gender": st.sampled_from(["Male", "Female", "female"]),
        "number": st.integers(1, 50),
    },
    optional={"volume": st.integers(-4, 4), "premium": st.booleans()},
)
callback_urls = st.builds(
    "{}://{}/{}".format,
    st.sampled_from(["http", "https"]),
    st.sampled_from(["example.com", "localhost:8000", "hooks.example.org"]),
    st.from_regex(r"[a-z0-9/]{0,40}", fullmatch=True),
)
COMMON = {
    "instruction-id": st.from_regex(r"[A-Za-z0-9._~-]{1,64}", fullmatch=True),
    "anonymous": st.booleans(),
    "voice": voices,
    "callback-url": callback_urls,
    "max-ringing-timeout": st.integers(10, 60),
}


def texts(max_size: int) -> st.SearchStrategy[str]:
    return st.text(min_size=1, max_size=max_size)


def prompts(names: list[str], max_size: int) -> dict[str, st.SearchStrategy[Any]]:
    """Each prompt field and its ``-type`` field."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name in names:
        fields[name] = texts(max_size)
        fields[f"{name}-type"] = prompt_types
    return fields


@st.composite
def notifications(draw: st.DrawFn) -> dict[str, Any]:
    data = draw(
        st.fixed_dictionaries(
            {"callee": numbers, "caller": numbers, "prompt": texts(750)},
            optional={
                **COMMON,
                **prompts(["replay-prompt"], 750),
                "prompt-type": prompt_types,
                "max-replays": st.integers(0, 3),
                "auto-replay": st.booleans(),
                "voicemail-response": st.sampled_from(["Ignore", "Restart", "Stop", "stop"]),
            },
        )
    )
    if data.get("max-replays") and not data.get("auto-replay"):
        # The cross-field rule: replays that wait for "1" need a prompt asking for it.
        data["replay-prompt"] = draw(texts(750))
    return data


otps = st.fixed_dictionaries(
    {
        "callee": numbers,
        "caller": numbers,
        "code": st.from_regex(r"[A-Za-z0-9]{1,64}", fullmatch=True),
    },
    optional={
        **COMMON,
        **prompts(["intro-prompt", "code-prompt", "replay-prompt", "outro-prompt"], 500),
        "code-type": st.sampled_from(["Default", "Custom", "TTS", "custom"]),
        "max-replays": st.integers(0, 3),
        "auto-replay": st.booleans(),
        "voicemail-response": st.sampled_from(["Ignore", "Restart", "Stop"]),
    },
)


@st.composite
def dtmfs(draw: st.DrawFn) -> dict[str, Any]:
    min_digits = draw(st.integers(1, 99))
    return draw(
        st.fixed_dictionaries(
            {
                "callee": numbers,
                "caller": numbers,
                "min-digits": st.just(min_digits),
                "max-digits": st.integers(min_digits, 99),
                "max-attempts": st.integers(1, 99),
            },
            optional={
                **COMMON,
                **prompts(["prompt", "valid-prompt", "invalid-prompt"], 1000),
                "timeout": st.integers(1000, 10000),
                "terminators": st.from_regex(r"[0-9*#]{0,8}", fullmatch=True),
                "regex": st.sampled_from([r"[0-9]*", r"\d{4}", "1|2|3", "[0-9]{2,5}#?", "^$"]),
            },
        )
    )


VALID = {"notification": notifications(), "otp": otps, "dtmf": dtmfs()}


@st.composite
def spelled_either_way(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """A valid instruction of ``kind``, each top-level name hyphenated or snake_case at random."""
    data = draw(VALID[kind])
    return {draw(st.sampled_from([name, name.replace("-", "_")])): v for name, v in data.items()}


valid_instructions = st.sampled_from(list(VALID)).flatmap(
    lambda kind: st.tuples(st.just(kind), spelled_either_way(kind))
)
#: Strings shaped like regular expressions, repetition counts of any size included.
regex_like = st.text(alphabet="a0123456789{},*+?()[]|\\^$.#") | st.builds(
    "{}{{{},{}}}".format,
    st.sampled_from(["a", "[0-9]", "(1|2)", "."]),
    st.integers(0, 10**20),
    st.integers(0, 10**20),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
FIELD_NAMES = sorted(
    {
        spelling
        for model in MODELS.values()
        for name in model.model_fields
        for spelling in (name, name.replace("_", "-"))
    }
)


def outcome(validate: Callable[[], Any], expected: type[Exception]) -> Any:
    """What ``validate()`` returns, or the ``expected`` error it raises; any other error escapes."""
    try:
        return validate()
    except expected as error:
        return error


def names_in_payload(payload: dict[str, Any]) -> list[str]:
    names = list(payload)
    voice = payload.get("voice")
    return names + (list(voice) if isinstance(voice, dict) else [])


@FAST
@given(valid_instructions)
def test_a_valid_instruction_survives_its_own_payload(kind_and_data: tuple[str, Any]) -> None:
    # Given a generated valid instruction, spelled with CM's names or Python's
    kind, data = kind_and_data
    model = MODELS[kind]
    instruction = model.model_validate(data)

    # When its payload is validated again, as CM's JSON
    payload = instruction.to_payload()  # type: ignore[attr-defined]
    again = model.model_validate_json(json.dumps(payload))

    # Then it is the same instruction, with the same payload, in CM's spelling
    assert again == instruction
    assert model.model_validate(payload) == instruction
    assert again.to_payload() == payload  # type: ignore[attr-defined]
    assert all("_" not in name for name in names_in_payload(payload))
    assert payload["callee"].startswith("+")
    assert payload["callee"][1:].isdigit()


@FAST
@given(
    kind=st.sampled_from(list(MODELS)),
    data=st.dictionaries(
        st.sampled_from(FIELD_NAMES) | st.text(max_size=12), json_values, max_size=8
    ),
)
def test_arbitrary_json_only_ever_raises_the_validation_error(
    kind: str, data: dict[str, Any]
) -> None:
    # Given any JSON object at all
    model = MODELS[kind]

    # When it is validated, by pydantic and by parse_instruction
    raw = outcome(lambda: model.model_validate(data), ValidationError)
    parsed = outcome(lambda: parse_instruction(kind, data), InvalidInstruction)

    # Then each is an instruction or the validation error, and both agree on which
    assert isinstance(raw, model | ValidationError)
    assert isinstance(parsed, model | InvalidInstruction)
    assert isinstance(raw, ValidationError) == isinstance(parsed, InvalidInstruction)


@st.composite
def one_field_replaced(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A valid instruction with one known field set to a random string or JSON value."""
    kind = draw(st.sampled_from(list(VALID)))
    data = draw(VALID[kind])
    name = draw(
        st.sampled_from(sorted(MODELS[kind].model_fields)).map(lambda n: n.replace("_", "-"))
    )
    data[name] = draw(st.text() | regex_like | json_values)
    return kind, data


@FAST
@given(one_field_replaced())
def test_a_random_value_in_any_field_only_ever_raises_the_validation_error(
    kind_and_data: tuple[str, dict[str, Any]],
) -> None:
    # Given a valid instruction with one field replaced by a random value
    kind, data = kind_and_data

    model = MODELS[kind]

    # When it is validated
    raw = outcome(lambda: model.model_validate(data), ValidationError)
    parsed = outcome(lambda: parse_instruction(kind, data), InvalidInstruction)

    # Then it is refused with the validation error, or accepted and round trips
    assert isinstance(raw, ValidationError) == isinstance(parsed, InvalidInstruction)
    if isinstance(parsed, InvalidInstruction):
        assert parsed.errors
    else:
        assert model.model_validate(parsed.to_payload()) == parsed


@FAST
@given(
    callee=st.from_regex(r"(\+|00)?[1-9][0-9]{8,14}", fullmatch=True) | st.integers(10**8, 10**15),
    code=st.from_regex(r"[0-9]{8,20}-[0-9]{0,4}", fullmatch=True) | st.integers(10**7, 10**20),
)
def test_no_refusal_ever_quotes_the_number_or_the_code(callee: str | int, code: str | int) -> None:
    # Given an OTP instruction with an invalid code and some number that may be invalid too
    data = {"callee": callee, "caller": "+31761234567", "code": code}

    # When it is refused
    with pytest.raises(InvalidInstruction) as caught:
        parse_instruction("otp", data)
    with pytest.raises(ValidationError) as raw:
        OtpInstruction.model_validate(data)

    # Then neither the number nor the code appears in any text of the errors
    for text in (str(caught.value), repr(caught.value), str(raw.value), repr(raw.value)):
        assert str(callee) not in text
        assert str(code) not in text


@FAST
@given(pattern=regex_like)
def test_any_regex_shaped_string_is_accepted_or_refused_with_the_validation_error(
    pattern: str,
) -> None:
    # Given a DTMF instruction whose regex is some regex-shaped string
    data = {
        "callee": "+31612345678",
        "caller": "+31761234567",
        "min-digits": 1,
        "max-digits": 4,
        "max-attempts": 1,
        "regex": pattern,
    }

    # When it is validated
    parsed = outcome(lambda: parse_instruction("dtmf", data), InvalidInstruction)

    # Then a refusal names the regex field, and an acceptance keeps the pattern as given
    if isinstance(parsed, InvalidInstruction):
        assert [error.field for error in parsed.errors] == ["regex"]
    else:
        assert parsed.to_payload()["regex"] == pattern
