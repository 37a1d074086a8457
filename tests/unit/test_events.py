"""What CM sends back: the documented callbacks, result codes, call-queued answers, bad bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from cmvoice.errors import InvalidEvent
from cmvoice.events import (
    CallQueued,
    CallResult,
    DtmfFinished,
    NotificationFinished,
    OtpFinished,
    ResultCode,
    parse_call_queued,
    parse_event,
)
from tests.support.docs_examples import (
    CALLEE,
    CALLER,
    DTMF_FINISHED,
    NOTIFICATION_FINISHED,
    OTP_FINISHED,
    RESULT,
)

CALLBACKS = {
    "notification-finished": (NotificationFinished, NOTIFICATION_FINISHED),
    "otp-finished": (OtpFinished, OTP_FINISHED),
    "dtmf-finished": (DtmfFinished, DTMF_FINISHED),
}
QUEUED = {
    "type": "call-queued",
    "call-id": "2b2fd2b6-6ab9-4b2c-8f3b-6a3a8f1d2e01",
    "instruction-id": "order-42",
    "caller": CALLER,
    "callee": CALLEE,
    "success": True,
    "error": None,
}


def callback(changes: dict[str, Any], base: dict[str, Any] = DTMF_FINISHED) -> dict[str, Any]:
    """A documented callback with ``changes`` applied (a value of ... removes the field)."""
    data = {**base, **changes}
    return {name: value for name, value in data.items() if value is not ...}


def invalid_event(raw: Any) -> str:
    """The message of the InvalidEvent that parse_event raises for ``raw``."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    return str(caught.value)


@pytest.mark.parametrize(("model", "example"), CALLBACKS.values(), ids=list(CALLBACKS))
def test_a_documented_callback_parses_into_its_class_and_round_trips_exactly(
    model: type[Any], example: dict[str, Any]
) -> None:
    # Given one of the documentation's callback bodies, as CM posts it
    body = json.dumps(example).encode()

    # When it is parsed
    event = parse_event(body)

    # Then it is the right class, and serializes back to the very same JSON
    assert type(event) is model
    assert event.to_payload() == example
    assert json.loads(json.dumps(event.to_payload())) == example


@pytest.mark.parametrize(
    "raw",
    [json.dumps(DTMF_FINISHED).encode(), json.dumps(DTMF_FINISHED), DTMF_FINISHED],
    ids=["bytes", "str", "dict"],
)
def test_parse_event_reads_bytes_text_and_an_already_decoded_dict(raw: Any) -> None:
    # Given the DTMF callback in one of three shapes
    # When it is parsed
    event = parse_event(raw)

    # Then its fields are there, typed
    assert isinstance(event, DtmfFinished)
    assert event.digits == "1234"
    assert event.call_id == "6d0f176e-00ac-4de2-a04d-b3f7c895adb0"
    assert event.instruction_id == "aeba8cae-eadd-4b49-9350-8061893b3d66"
    assert event.result == CallResult(code=10, description="Finished")
    assert event.started_on == datetime(2018, 2, 9, 11, 0, 31, 752000, tzinfo=UTC)


def test_the_result_codes_are_the_four_documented_ones() -> None:
    # Given / When / Then
    assert {code.name: code.value for code in ResultCode} == {
        "CANCELLED": 9,
        "FINISHED": 10,
        "FAILED": 11,
        "REJECTED": 12,
    }


def test_the_documented_result_object_parses_as_finished() -> None:
    # Given the "Result codes" chapter's example
    # When
    result = CallResult.model_validate(RESULT)

    # Then
    assert result.result_code is ResultCode.FINISHED
    assert result.description == "Finished successfully"
    assert result.to_payload() == RESULT


@pytest.mark.parametrize("code", [9, 10, 11, 12])
def test_each_documented_code_in_a_callback_becomes_its_result_code(code: int) -> None:
    # Given a callback with a documented code
    data = callback({"result": {"code": code, "description": "as CM says"}})

    # When
    event = parse_event(data)

    # Then
    assert event.result.result_code is ResultCode(code)  # type: ignore[union-attr]


def test_an_unknown_result_code_is_kept_and_not_fatal() -> None:
    # Given a callback with a code the documentation does not list
    data = callback({"result": {"code": 42, "description": "Something new"}})

    # When it is parsed
    event = parse_event(data)

    # Then the code is kept as sent, with no ResultCode for it
    assert event.result.code == 42  # type: ignore[union-attr]
    assert event.result.result_code is None  # type: ignore[union-attr]
    assert event.to_payload()["result"] == {"code": 42, "description": "Something new"}


def test_the_sip_disconnect_cause_is_read_and_sent_back() -> None:
    # Given a result with CM's optional SIP fields
    result = {
        "code": 10,
        "description": "Finished successfully",
        "sip-disconnect-code": "BYE",
        "sip-disconnect-reason": "",
    }

    # When
    event = parse_event(callback({"result": result}))

    # Then
    assert event.result.sip_disconnect_code == "BYE"  # type: ignore[union-attr]
    assert event.result.sip_disconnect_reason == ""  # type: ignore[union-attr]
    assert event.to_payload()["result"] == result


@pytest.mark.parametrize("answered_on", [..., None], ids=["missing", "null"])
def test_a_call_never_answered_may_have_no_answered_on(answered_on: Any) -> None:
    # Given a cancelled call whose answered-on is missing or null
    data = callback(
        {"answered-on": answered_on, "result": {"code": 9, "description": "Cancelled"}},
        base=NOTIFICATION_FINISHED,
    )

    # When
    event = parse_event(data)

    # Then it is accepted, without an answer moment, and sent back as it came
    assert event.answered_on is None  # type: ignore[union-attr]
    assert event.to_payload() == data


@pytest.mark.parametrize(
    ("sent", "moment", "shown"),
    [
        ("2018-02-09T11:00:31.752Z", datetime(2018, 2, 9, 11, 0, 31, 752000, tzinfo=UTC), None),
        (
            "2018-02-09T11:00:31.752",
            datetime(2018, 2, 9, 11, 0, 31, 752000, tzinfo=UTC),
            "2018-02-09T11:00:31.752Z",
        ),
        (
            "2018-02-09T12:00:31.752+01:00",
            datetime(2018, 2, 9, 11, 0, 31, 752000, tzinfo=UTC),
            "2018-02-09T11:00:31.752Z",
        ),
    ],
    ids=["utc", "naive", "offset"],
)
def test_timestamps_are_timezone_aware_and_naive_ones_are_utc(
    sent: str, moment: datetime, shown: str | None
) -> None:
    # Given a callback whose started-on is in some ISO 8601 form
    data = callback({"started-on": sent})

    # When it is parsed
    event = parse_event(data)

    # Then every timestamp is aware, at the right instant, and sent back in CM's format
    assert event.started_on.tzinfo is not None  # type: ignore[union-attr]
    assert event.finished_on.tzinfo is not None  # type: ignore[union-attr]
    assert event.started_on == moment  # type: ignore[union-attr]
    assert event.to_payload()["started-on"] == (shown or sent)


def test_unknown_fields_are_tolerated_so_cm_may_add_some() -> None:
    # Given a callback with fields the documentation does not have, at two levels
    data = callback({"duration-ms": 16360, "result": {**RESULT, "carrier": "KPN"}})

    # When it is parsed
    event = parse_event(data)

    # Then the known fields are read and the new ones are left out of the payload
    assert isinstance(event, DtmfFinished)
    assert event.result.result_code is ResultCode.FINISHED
    assert "duration-ms" not in event.to_payload()
    assert event.to_payload()["result"] == RESULT


def test_an_anonymous_caller_and_no_digits_are_accepted() -> None:
    # Given a DTMF callback with a hidden caller and no valid input
    data = callback({"caller": "anonymous", "digits": ""})

    # When
    event = parse_event(data)

    # Then
    assert isinstance(event, DtmfFinished)
    assert event.caller == "anonymous"
    assert event.digits == ""


def test_a_call_id_in_capitals_is_read_in_lowercase() -> None:
    # Given a call-id in capitals (the documentation promises lowercase)
    data = callback({"call-id": "6D0F176E-00AC-4DE2-A04D-B3F7C895ADB0"})

    # When / Then
    assert parse_event(data).call_id == "6d0f176e-00ac-4de2-a04d-b3f7c895adb0"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (callback({"type": "voicemail-finished"}), "unknown event type 'voicemail-finished'"),
        (callback({"type": 10}), "unknown event type 10"),
        (callback({"type": ...}), "type: field required"),
        ("[1, 2]", "must be a JSON object, got array"),
        ('"notification-finished"', "must be a JSON object, got string"),
        ("null", "must be a JSON object, got null"),
        (b'{"type": "otp-finished",', "malformed JSON"),
        (b"\xff\xfe", "malformed JSON"),
        ("", "malformed JSON"),
        (callback({"finished-on": ...}), "finished-on: Field required"),
        (callback({"started-on": "yesterday"}), "started-on:"),
        (callback({"call-id": "42"}), "call-id:"),
        (b"[" * 3000 + b"]" * 3000, "JSON nesting: deeper than the limit of 32 levels"),
        (b'{"type": ' + b"9" * 5000 + b"}", "JSON number: 5000 characters, over the limit"),
        (
            callback({"started-on": "0001-01-01T00:00:00+01:00"}),
            "started-on: the time is out of range once converted to UTC",
        ),
        (
            callback({"finished-on": "9999-12-31T23:59:59-00:01"}),
            "finished-on: the time is out of range once converted to UTC",
        ),
    ],
    ids=[
        "unknown type",
        "type not a string",
        "missing type",
        "array",
        "string",
        "null",
        "truncated JSON",
        "not UTF-8",
        "empty body",
        "missing field",
        "bad timestamp",
        "bad call-id",
        "nested 3,000 deep",
        "integer of 5,000 digits",
        "timestamp before year 1 in UTC",
        "timestamp after year 9999 in UTC",
    ],
)
def test_a_body_that_is_not_a_known_event_raises_invalid_event_with_a_clear_message(
    raw: Any, message: str
) -> None:
    # Given / When
    text = invalid_event(raw)

    # Then
    assert message in text


def test_an_unknown_type_error_lists_the_known_types() -> None:
    # Given / When
    text = invalid_event(callback({"type": "sms-finished"}))

    # Then
    for known in ("notification-finished", "otp-finished", "dtmf-finished", "call-queued"):
        assert known in text


def test_an_invalid_event_message_masks_phone_numbers() -> None:
    # Given a callback whose callee breaks the schema (too long)
    number = CALLEE + "99999999999999"

    # When
    text = invalid_event(callback({"callee": number, "result": "finished"}))

    # Then the field is named, the number is not shown in full
    assert "callee:" in text
    assert number not in text
    assert CALLEE not in text


def test_an_events_repr_holds_no_phone_number() -> None:
    # Given / When
    event = parse_event(OTP_FINISHED)

    # Then
    assert CALLEE not in repr(event)
    assert CALLER not in repr(event)


def test_call_queued_is_read_from_one_object() -> None:
    # Given CM's answer to an instruction with one callee
    body = json.dumps(QUEUED).encode()

    # When
    answer = parse_call_queued(body)

    # Then
    assert answer == [CallQueued.model_validate(QUEUED)]
    assert answer[0].call_id == QUEUED["call-id"]
    assert answer[0].instruction_id == "order-42"
    assert answer[0].success is True
    assert answer[0].to_payload() == QUEUED


def test_call_queued_is_read_from_an_array_in_order() -> None:
    # Given CM's answer as an array of two
    second = {**QUEUED, "call-id": "0b8c8d8e-1f20-4a3b-9c4d-5e6f7a8b9c0d"}
    body = json.dumps([QUEUED, second])

    # When
    answer = parse_call_queued(body)

    # Then
    assert [queued.call_id for queued in answer] == [QUEUED["call-id"], second["call-id"]]


def test_call_queued_is_also_an_event_type() -> None:
    # Given / When
    event = parse_event(QUEUED)

    # Then
    assert isinstance(event, CallQueued)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[]", "empty array"),
        ('{"type": "call-queued"}', "call-id"),
        ("<html>502 Bad Gateway</html>", "malformed JSON"),
        ("[" * 3000, "JSON nesting: deeper than the limit"),
        ('{"type": "call-queued", "success": ' + "1" * 5000 + "}", "JSON number: 5000"),
    ],
    ids=["empty array", "no call-id", "not JSON", "nested 3,000 deep", "5,000 digits"],
)
def test_an_unreadable_call_queued_answer_raises_invalid_event(raw: str, message: str) -> None:
    # Given / When
    with pytest.raises(InvalidEvent) as caught:
        parse_call_queued(raw)

    # Then
    assert message in str(caught.value)
