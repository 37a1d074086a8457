"""The wire contract: CM's documented examples round trip, and every documented rule holds."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from cmvoice.errors import FieldError, InvalidInstruction
from cmvoice.instructions import (
    CodeType,
    DtmfInstruction,
    Gender,
    NotificationInstruction,
    OtpInstruction,
    PromptType,
    Voice,
    VoicemailResponse,
    infer_kind,
    parse_instruction,
)
from tests.support.docs_examples import (
    CALLEE,
    CALLEE_00,
    CALLER,
    DTMF_INSTRUCTION,
    NOTIFICATION_INSTRUCTION,
    OTP_INSTRUCTION,
    with_e164_numbers,
)

#: Marks a field to leave out of an instruction.
MISSING: Any = object()

#: The smallest valid instruction of each kind: its required fields only.
MINIMAL: dict[str, dict[str, Any]] = {
    "notification": {"callee": CALLEE, "caller": CALLER, "prompt": "Your parcel arrives today."},
    "otp": {"callee": CALLEE, "caller": CALLER, "code": "123abc"},
    "dtmf": {
        "callee": CALLEE,
        "caller": CALLER,
        "min-digits": 1,
        "max-digits": 4,
        "max-attempts": 3,
    },
}
MODEL_OF: dict[str, type[BaseModel]] = {
    "notification": NotificationInstruction,
    "otp": OtpInstruction,
    "dtmf": DtmfInstruction,
}
VOICE = {"language": "en-GB", "gender": "Female", "number": 1}


def variant(kind: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The minimal instruction of ``kind`` with ``changes`` applied (MISSING removes a field)."""
    data = {**MINIMAL[kind], **changes}
    return {name: value for name, value in data.items() if value is not MISSING}


def refusal(kind: str, data: Any) -> InvalidInstruction:
    """The InvalidInstruction that parse_instruction raises for ``data``."""
    with pytest.raises(InvalidInstruction) as caught:
        parse_instruction(kind, data)
    return caught.value


@dataclass(frozen=True)
class Rule:
    """One documented rule: an instruction that keeps it, and one that breaks it."""

    name: str
    kind: str
    field: str
    accepted: dict[str, Any]
    refused: dict[str, Any]
    #: Words of the rule the error must state, and of the value it must show.
    rule: str
    shown: str
    #: What CM receives for the accepted fields, when cmvoice rewrites them.
    sent: dict[str, Any] = dataclasses.field(default_factory=dict)


def required(kind: str, name: str) -> Rule:
    return Rule(
        f"{kind} {name} is required",
        kind,
        name,
        accepted={},
        refused={name: MISSING},
        rule="Field required",
        shown="nothing",
    )


def max_length(kind: str, name: str, limit: int, filler: str = "") -> Rule:
    return Rule(
        f"{kind} {name} holds at most {limit} characters",
        kind,
        name,
        accepted={name: filler + "a" * (limit - len(filler))},
        refused={name: filler + "a" * (limit + 1 - len(filler))},
        rule=f"at most {limit} characters",
        shown=f"{limit + 1} characters",
    )


def prompt_type(kind: str, name: str) -> Rule:
    return Rule(
        f"{kind} {name} is TTS, TTS_SSML or File",
        kind,
        name,
        accepted={name: "TTS_SSML"},
        refused={name: "Text"},
        rule="'TTS', 'TTS_SSML' or 'File'",
        shown="'Text'",
    )


def number_range(kind: str, name: str, good: Any, bad: Any, rule: str, **extra: Any) -> Rule:
    return Rule(
        f"{kind} {name} {rule} ({good} accepted, {bad} refused)",
        kind,
        name,
        accepted={name: good, **extra},
        refused={name: bad, **extra},
        rule=rule,
        shown=str(bad),
    )


def voice_rule(name: str, good: Any, bad: Any, rule: str) -> Rule:
    return Rule(
        f"voice {name}: {rule} ({good!r} accepted, {bad!r} refused)",
        "notification",
        f"voice.{name}",
        accepted={"voice": {**VOICE, name: good}},
        refused={"voice": {**VOICE, name: bad}},
        rule=rule,
        shown=repr(bad),
    )


REPLAY = {"replay-prompt": "Press 1 to hear this again."}
RULES = [
    # Required fields, per app.
    *(required("notification", name) for name in ("callee", "caller", "prompt")),
    *(required("otp", name) for name in ("callee", "caller", "code")),
    *(
        required("dtmf", name)
        for name in ("callee", "caller", "min-digits", "max-digits", "max-attempts")
    ),
    # Maximum lengths.
    max_length("notification", "prompt", 750),
    max_length("notification", "replay-prompt", 750),
    *(
        max_length("otp", name, 500)
        for name in ("intro-prompt", "code-prompt", "replay-prompt", "outro-prompt")
    ),
    *(max_length("dtmf", name, 1000) for name in ("prompt", "valid-prompt", "invalid-prompt")),
    *(max_length(kind, "instruction-id", 64) for kind in MINIMAL),
    *(max_length(kind, "callback-url", 256, filler="https://example.com/cb/") for kind in MINIMAL),
    max_length("otp", "code", 64),
    Rule(
        "notification prompt is not empty",
        "notification",
        "prompt",
        accepted={"prompt": "a"},
        refused={"prompt": ""},
        rule="at least 1 character",
        shown="''",
    ),
    # Value sets.
    prompt_type("notification", "prompt-type"),
    prompt_type("notification", "replay-prompt-type"),
    *(
        prompt_type("otp", name)
        for name in (
            "intro-prompt-type",
            "code-prompt-type",
            "replay-prompt-type",
            "outro-prompt-type",
        )
    ),
    *(
        prompt_type("dtmf", name)
        for name in ("prompt-type", "valid-prompt-type", "invalid-prompt-type")
    ),
    Rule(
        "otp code-type is Default, Custom or TTS",
        "otp",
        "code-type",
        accepted={"code-type": "Custom"},
        refused={"code-type": "Robot"},
        rule="'Default', 'Custom' or 'TTS'",
        shown="'Robot'",
    ),
    voice_rule("gender", "Male", "Other", "'Male' or 'Female'"),
    *(
        Rule(
            f"{kind} voicemail-response is Ignore, Restart or Stop",
            kind,
            "voicemail-response",
            accepted={"voicemail-response": good},
            refused={"voicemail-response": "Hangup"},
            rule="'Ignore', 'Restart' or 'Stop'",
            shown="'Hangup'",
        )
        for kind, good in (("notification", "Restart"), ("otp", "Stop"))
    ),
    Rule(
        "dtmf has no voicemail-response (CM documents no voicemail detection for it)",
        "dtmf",
        "voicemail-response",
        accepted={},
        refused={"voicemail-response": "Ignore"},
        rule="Extra inputs are not permitted",
        shown="6 characters",
    ),
    Rule(
        "anonymous is a boolean",
        "notification",
        "anonymous",
        accepted={"anonymous": True},
        refused={"anonymous": "sometimes"},
        rule="valid boolean",
        shown="'sometimes'",
    ),
    # Ranges.
    number_range("notification", "max-replays", 3, 4, "less than or equal to 3", **REPLAY),
    number_range("notification", "max-replays", 0, -1, "greater than or equal to 0", **REPLAY),
    number_range("otp", "max-replays", 3, 4, "less than or equal to 3"),
    number_range("otp", "max-replays", 0, -1, "greater than or equal to 0"),
    number_range("dtmf", "timeout", 1000, 999, "greater than or equal to 1000"),
    number_range("dtmf", "timeout", 10000, 10001, "less than or equal to 10000"),
    number_range("dtmf", "max-attempts", 1, 0, "greater than or equal to 1"),
    number_range("notification", "max-ringing-timeout", 10, 9, "greater than or equal to 10"),
    number_range("otp", "max-ringing-timeout", 60, 61, "less than or equal to 60"),
    number_range("dtmf", "max-ringing-timeout", 30, 5, "greater than or equal to 10"),
    Rule(
        "dtmf min-digits is at most max-digits",
        "dtmf",
        "min-digits",
        accepted={"min-digits": 4, "max-digits": 4},
        refused={"min-digits": 5, "max-digits": 4},
        rule="must be <= max-digits (4)",
        shown="5",
    ),
    voice_rule("volume", -4, -5, "greater than or equal to -4"),
    voice_rule("volume", 4, 5, "less than or equal to 4"),
    voice_rule("number", 1, 0, "greater than or equal to 1"),
    voice_rule("language", "nl-NL", "english", "locale such as en-GB"),
    voice_rule("language", "de-DE", "en_GB", "locale such as en-GB"),
    voice_rule("language", "en-US", "EN-gb", "locale such as en-GB"),
    # Formats.
    Rule(
        "dtmf regex must compile",
        "dtmf",
        "regex",
        accepted={"regex": "[0-9]{4}"},
        refused={"regex": "[0-9"},
        rule="not a valid regular expression",
        shown="'[0-9'",
    ),
    Rule(
        "dtmf regex must compile, even with a repetition too large for Python's re",
        "dtmf",
        "regex",
        accepted={"regex": "[0-9]{1,9}"},
        refused={"regex": "a{99999999999}"},
        rule="not a valid regular expression",
        shown="'a{99999999999}'",
    ),
    Rule(
        "dtmf terminators are DTMF keys",
        "dtmf",
        "terminators",
        accepted={"terminators": "*#09"},
        refused={"terminators": "#A"},
        rule="only DTMF keys 0-9, * and #",
        shown="'#A'",
    ),
    Rule(
        "otp code is letters and digits only",
        "otp",
        "code",
        accepted={"code": "A7x9"},
        refused={"code": "a7-x9"},
        rule="only letters and digits",
        shown="<hidden, 5 characters>",
    ),
    *(
        Rule(
            f"callback-url is an http(s) URL ({bad!r} refused)",
            "otp",
            "callback-url",
            accepted={"callback-url": good},
            refused={"callback-url": bad},
            rule="absolute http:// or https:// URL",
            shown=repr(bad),
        )
        for good, bad in (
            ("https://hooks.example.com/cm?id=1", "ftp://example.com/cb"),
            ("http://localhost:8000/callbacks/cm", "example.com/cb"),
            ("https://example.com/", "javascript:alert(1)"),
        )
    ),
    Rule(
        "instruction-id is URL-safe",
        "dtmf",
        "instruction-id",
        accepted={"instruction-id": "aeba8cae-eadd-4b49-9350-8061893b3d66"},
        refused={"instruction-id": "order 42/1"},
        rule="only letters, digits",
        shown="'order 42/1'",
    ),
    # Phone numbers.
    *(
        Rule(
            f"{name} is international, sent as E.164 ({good!r} accepted)",
            "notification",
            name,
            accepted={name: good},
            refused={name: "0612345678"},
            rule="international number starting with + or 00 and the country code (e.g. +31 6",
            shown="061****678",
            sent={name: "+31612345678"},
        )
        for name in ("callee", "caller")
        for good in ("+31612345678", "0031612345678", "+31 6 1234 5678")
    ),
    Rule(
        "callee must be a valid number for its country code",
        "otp",
        "callee",
        accepted={"callee": "+4915123456789"},
        refused={"callee": "+3161234"},
        rule="not a valid number for its country code",
        shown="******34",
    ),
    # Cross-field rules.
    *(
        Rule(
            f"notification max-replays > 0 without auto-replay needs a replay-prompt ({ok})",
            "notification",
            "replay-prompt",
            accepted=accepted,
            refused={"max-replays": 2},
            rule="required when max-replays > 0 (2) and auto-replay is not true",
            shown="nothing",
        )
        for ok, accepted in (
            ("replay prompt given", {"max-replays": 2, **REPLAY}),
            ("auto-replay", {"max-replays": 2, "auto-replay": True}),
            ("no replays", {"max-replays": 0}),
        )
    ),
    Rule(
        "notification max-replays with auto-replay false still needs a replay-prompt",
        "notification",
        "replay-prompt",
        accepted={"max-replays": 1, "auto-replay": False, **REPLAY},
        refused={"max-replays": 1, "auto-replay": False},
        rule="required when max-replays > 0 (1)",
        shown="nothing",
    ),
    # Unknown fields.
    Rule(
        "an unknown field is refused, named as it was spelled",
        "otp",
        "callees",
        accepted={},
        refused={"callees": [CALLEE]},
        rule="Extra inputs are not permitted",
        shown="<hidden list>",
    ),
]


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_an_instruction_that_keeps_the_rule_is_accepted_and_sent_as_given(rule: Rule) -> None:
    # Given an instruction that keeps the rule
    data = variant(rule.kind, rule.accepted)

    # When it is validated
    payload = parse_instruction(rule.kind, data).to_payload()

    # Then CM receives the fields as given (or in CM's canonical form)
    expected = {**rule.accepted, **rule.sent}
    for name, value in expected.items():
        if value is MISSING:
            assert name not in payload
        else:
            assert payload[name] == value


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_an_instruction_that_breaks_the_rule_is_refused_naming_field_rule_and_value(
    rule: Rule,
) -> None:
    # Given an instruction that breaks exactly this rule
    data = variant(rule.kind, rule.refused)

    # When it is validated
    error = refusal(rule.kind, data)

    # Then the only error names the field, states the rule and shows the value
    assert [broken.field for broken in error.errors] == [rule.field]
    (broken,) = error.errors
    assert rule.rule in broken.rule
    assert rule.shown in broken.value
    assert str(broken) in str(error)


@pytest.mark.parametrize("spelling", ["tts", "Tts", "tts_ssml", "Tts_Ssml", "file", "FILE"])
def test_a_prompt_type_is_accepted_in_any_case_and_sent_in_cms_spelling(spelling: str) -> None:
    # Given a prompt type typed carelessly
    data = variant("notification", {"prompt-type": spelling})

    # When it is validated
    payload = parse_instruction("notification", data).to_payload()

    # Then CM receives its documented spelling
    assert payload["prompt-type"] in {"TTS", "TTS_SSML", "File"}
    assert payload["prompt-type"].lower() == spelling.lower()


@pytest.mark.parametrize(
    ("enum", "values"),
    [
        (PromptType, ["TTS", "TTS_SSML", "File"]),
        (CodeType, ["Default", "Custom", "TTS"]),
        (Gender, ["Male", "Female"]),
        (VoicemailResponse, ["Ignore", "Restart", "Stop"]),
    ],
)
def test_each_enumeration_holds_exactly_the_documented_strings(
    enum: type[Any], values: list[str]
) -> None:
    # Given / When / Then
    assert [member.value for member in enum] == values


@pytest.mark.parametrize(
    ("kind", "example"),
    [
        ("notification", NOTIFICATION_INSTRUCTION),
        ("otp", OTP_INSTRUCTION),
        ("dtmf", DTMF_INSTRUCTION),
    ],
)
def test_a_documented_example_parses_into_its_model_and_serializes_back_to_the_same_json(
    kind: str, example: dict[str, Any]
) -> None:
    # Given one of the documentation's JSON examples
    text = json.dumps(example)

    # When it is parsed and serialized again
    instruction = MODEL_OF[kind].model_validate_json(text)
    payload = instruction.to_payload()  # type: ignore[attr-defined]

    # Then it is the right model, and CM receives the same JSON with E.164 numbers
    assert type(instruction) is MODEL_OF[kind]
    assert infer_kind(example) == kind
    assert json.loads(json.dumps(payload)) == with_e164_numbers(example)


@pytest.mark.parametrize("kind", list(MINIMAL))
def test_hyphenated_and_snake_case_names_give_the_same_instruction(kind: str) -> None:
    # Given the same instruction spelled with CM's names and with Python's names
    hyphenated = variant(kind, {"instruction-id": "order-42", "max-ringing-timeout": 30})
    snake = {name.replace("-", "_"): value for name, value in hyphenated.items()}

    # When both are validated
    from_cm_names = parse_instruction(kind, hyphenated)
    from_python_names = parse_instruction(kind, snake)

    # Then they are equal, and both are sent with CM's names
    assert from_cm_names == from_python_names
    assert from_python_names.to_payload() == {**hyphenated, "callee": CALLEE}
    assert from_python_names.max_ringing_timeout == 30


def test_the_payload_holds_the_fields_that_were_set_and_the_required_ones_only() -> None:
    # Given an instruction with a few optional fields, one of them set to its default
    instruction = NotificationInstruction(
        callee=CALLEE_00,
        caller=CALLER,
        prompt="Your parcel arrives today.",
        auto_replay=False,
        voice=Voice(language="en-GB", gender=Gender.Female, number=1),
    )

    # When it is serialized for CM
    payload = instruction.to_payload()

    # Then CM receives those fields, hyphenated, and none of the unset ones
    assert payload == {
        "callee": CALLEE,
        "caller": CALLER,
        "prompt": "Your parcel arrives today.",
        "auto-replay": False,
        "voice": {"language": "en-GB", "gender": "Female", "number": 1},
    }


def test_an_unknown_kind_is_refused_naming_the_kinds() -> None:
    # Given / When
    error = refusal("sms", MINIMAL["notification"])

    # Then
    assert error.errors == [FieldError("kind", "must be one of notification, otp, dtmf", "'sms'")]


def test_every_broken_rule_is_reported_not_only_the_first() -> None:
    # Given an instruction breaking three rules
    data = variant("dtmf", {"timeout": 50, "terminators": "x", "callee": MISSING})

    # When
    error = refusal("dtmf", data)

    # Then
    assert sorted(broken.field for broken in error.errors) == ["callee", "terminators", "timeout"]
    assert "3 error(s)" in str(error)


SECRET_CODE = "Zq7Xw9Kp"
#: Every spelling of the callee's number a message could leak, and the OTP code.
SECRETS = ["+31612345678", "0031612345678", "31612345678", "0612345678", "612345678"]
LEAKY_INPUTS = {
    "national callee": ("notification", variant("notification", {"callee": "0612345678"})),
    "callee as a JSON number": ("notification", variant("notification", {"callee": 31612345678})),
    "callee too long": ("otp", variant("otp", {"callee": CALLEE_00 + "0" * 12})),
    "callee not a valid number": ("dtmf", variant("dtmf", {"callee": "+316123456789"})),
    "callee in an unknown field": ("otp", variant("otp", {"callees": [CALLEE_00]})),
    "code with a dash": ("otp", variant("otp", {"code": SECRET_CODE + "-1"})),
    "code as a JSON number": ("otp", variant("otp", {"code": 612345678})),
    "code too long": ("otp", variant("otp", {"code": SECRET_CODE * 9})),
    "valid code, other rule broken": (
        "otp",
        variant("otp", {"code": SECRET_CODE, "max-replays": 7, "callee": CALLEE_00}),
    ),
    "cross-field rule broken": (
        "notification",
        variant("notification", {"callee": CALLEE_00, "max-replays": 1}),
    ),
    "instruction not an object": ("notification", [CALLEE_00, SECRET_CODE]),
}


@pytest.mark.parametrize(("kind", "data"), LEAKY_INPUTS.values(), ids=list(LEAKY_INPUTS))
def test_no_error_text_holds_the_phone_number_or_the_otp_code(kind: str, data: Any) -> None:
    # Given an invalid instruction holding a phone number and maybe an OTP code
    model = MODEL_OF[kind]

    # When it is refused, by parse_instruction and by pydantic directly
    error = refusal(kind, data)
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)

    # Then no text of either error holds the number or the code
    texts = [
        str(error),
        repr(error),
        repr(error.args),
        *(str(broken) for broken in error.errors),
        str(error.__cause__),
        str(caught.value),
        repr(caught.value),
    ]
    for text in texts:
        for secret in [*SECRETS, SECRET_CODE]:
            assert secret not in text


def test_a_valid_instructions_repr_holds_no_phone_number_or_otp_code() -> None:
    # Given an OTP instruction
    instruction = parse_instruction("otp", variant("otp", {"code": SECRET_CODE}))

    # When it is shown, as a log line or a debugger would
    texts = [repr(instruction), str(instruction)]

    # Then neither the numbers nor the code appear
    for text in texts:
        for secret in [*SECRETS, CALLER, SECRET_CODE]:
            assert secret not in text
