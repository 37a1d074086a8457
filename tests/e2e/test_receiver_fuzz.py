"""Fuzzing the receiver over real HTTP: no validly signed callback, however hostile, gets a 5xx.

Every case is a POST to a signed URL of a real receiver (uvicorn, a real Redis as broker), so
the bodies reach the parsing and publishing code, not just the signature check. CM retries
every 5xx answer, so a 5xx for a bad body would be retried for hours: a bad body gets a 4xx.
An exception the app leaves to uvicorn (logged as an error) fails a case too, even when no
5xx could reach the client. Derandomized: every run posts the same cases, so CI reproduces.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, TypeAlias
from urllib.parse import quote

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from cmvoice.receiver import MAX_BODY_BYTES
from cmvoice.signing import CALLBACK_PATH, sign
from tests.support.callbacks import cm_callback
from tests.support.raw_http import raw_post
from tests.support.stack import TEST_SECRET, Stack

#: Cases per run: enough to reach every branch below many times over.
FUZZ_EXAMPLES = 2000

INSTRUCTION_ID = "fuzz-1"
CALL_ID = "6d0f176e-00ac-4de2-a04d-b3f7c895adb0"
EVENT_TYPES = ["notification-finished", "otp-finished", "dtmf-finished", "call-queued"]
TIMESTAMP_FIELDS = ["started-on", "answered-on", "finished-on"]
RESULT_FIELDS = ["code", "description", "sip-disconnect-code", "sip-disconnect-reason"]
# A JSON string the generators put where a raw fragment (a huge number, deep nesting) goes:
# json.dumps cannot write those itself.
PLACEHOLDER = "\x00raw-fragment\x00"


def dtmf_callback(call_id: str) -> dict[str, Any]:
    return cm_callback(INSTRUCTION_ID, call_id, kind="dtmf", digits="42")


FIELDS = list(dtmf_callback(CALL_ID))


# --- strategies ------------------------------------------------------------------------------

# Any code point, lone surrogates and NUL included: they reach the JSON as \ud800 and \u0000.
characters = st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
texts = st.text(characters, max_size=40)
huge_texts = st.integers(1, 20_000).map(lambda n: "é" * n)
awkward_values = st.sampled_from(
    [
        "",
        "\x00",
        "\ud800",
        "\udfff\ud800",
        "2026-02-30T25:61:00Z",
        "2026-02-09T11:00:31.752",
        "2026-02-09",
        "1",
        "NaN",
        "6D0F176E-00AC-4DE2-A04D-B3F7C895ADB0",
        2**63,
        -(2**63),
        10**100,
        1e308,
        -0.0,
        float("inf"),
        float("nan"),
    ]
)
# ISO 8601 timestamps anywhere in datetime's range (its ends included: a fuzzer tries the
# edges), with any offset a timestamp can carry.
timestamps = st.builds(
    lambda moment, offset_min: moment.replace(
        tzinfo=timezone(timedelta(minutes=offset_min))
    ).isoformat(),
    st.datetimes() | st.sampled_from([datetime.min, datetime.max]),
    st.integers(-1439, 1439) | st.sampled_from([-1439, 1439]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=20,
)
digit_runs = st.integers(1, 6_000).map(lambda n: "9" * n)
# Number tokens json.dumps cannot write: thousands of digits, exponents past a double's range.
number_fragments = st.builds(
    lambda sign, digits, fraction, exponent: sign + digits + fraction + exponent,
    st.sampled_from(["", "-"]),
    digit_runs,
    st.sampled_from(["", ".5"]) | digit_runs.map(lambda d: "." + d),
    st.sampled_from(["", "e999999", "E-999999", "e+308"]) | digit_runs.map(lambda d: "e" + d),
)
# Deep nesting, built by repetition so that a 20,000-level case costs nothing to generate.
nesting_fragments = st.builds(
    lambda brackets, depth, closed: (
        brackets[0] * depth + "1" + (brackets[1] * depth if closed else "")
    ),
    st.sampled_from([("[", "]"), ('{"a":', "}"), ('[{"a":', "}]"), ("[ ", " ]")]),
    st.integers(1, 20_000),
    st.booleans(),
)


def encode(value: Any, ascii_only: bool, fragment: str | None = None) -> bytes:
    text = json.dumps(value, ensure_ascii=ascii_only)
    if fragment is not None:
        text = text.replace(json.dumps(PLACEHOLDER, ensure_ascii=ascii_only), fragment)
    # surrogatepass: a lone surrogate sent raw is invalid UTF-8, one more way to be malformed.
    return text.encode("utf-8", "surrogatepass")


# Strategies built once: building them inside a draw costs more than the HTTP round trip.
mutation_counts = st.integers(0, 4)
actions = st.sampled_from(["set", "delete", "set_result", "delete_result", "raw", "timestamp"])
field_names = st.sampled_from(FIELDS)
any_field_names = field_names | texts
result_field_names = st.sampled_from(RESULT_FIELDS)
any_result_field_names = result_field_names | texts
timestamp_field_names = st.sampled_from(TIMESTAMP_FIELDS)
field_values = st.sampled_from(EVENT_TYPES) | json_values | texts | huge_texts | awkward_values
raw_fragments = number_fragments | nesting_fragments
call_ids = st.just(CALL_ID) | st.uuids().map(str)
shapes = st.sampled_from(["object", "object", "list", "nested"])


@st.composite
def mutated_callbacks(draw: st.DrawFn) -> bytes:
    """A valid callback with a few fields broken, removed, added or replaced by raw fragments."""
    event: Any = dtmf_callback(draw(call_ids))
    fragment = None
    for _ in range(draw(mutation_counts)):
        action, field, value = draw(actions), draw(any_field_names), draw(field_values)
        result = event.get("result")
        if action == "set":
            event[field] = value
        elif action == "delete":
            event.pop(draw(field_names), None)
        elif action == "set_result" and isinstance(result, dict):
            result[draw(any_result_field_names)] = value
        elif action == "delete_result" and isinstance(result, dict):
            result.pop(draw(result_field_names), None)
        elif action == "timestamp":
            event[draw(timestamp_field_names)] = draw(timestamps)
        elif action == "raw":
            fragment = draw(raw_fragments)
            if isinstance(result, dict) and draw(st.booleans()):
                result["code"] = PLACEHOLDER
            else:
                event[field] = PLACEHOLDER
    shape = draw(shapes)
    if shape == "list":
        event = [event]
    elif shape == "nested":
        event = {"event": event}
    return encode(event, draw(st.booleans()), fragment)


bodies = st.one_of(
    st.binary(max_size=2_000),
    st.builds(encode, json_values, st.booleans()),
    number_fragments.map(str.encode),
    nesting_fragments.map(str.encode),
    mutated_callbacks(),
    mutated_callbacks(),
    mutated_callbacks(),
)
# Instruction ids: half the time the one the bodies carry; otherwise any text a URL can carry
# (quoted, and signed), which the receiver must refuse as a mismatch.
instruction_ids = st.just(INSTRUCTION_ID) | st.text(
    st.characters(codec="utf-8"), min_size=1, max_size=70
)
CHUNKED = (b"Transfer-Encoding: chunked",)


def chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"


# Content-Length values that lie about the body or are no length at all.
content_lengths = st.sampled_from(
    [
        b"-1",
        b"abc",
        b"1.5",
        b" 10",
        b"0x10",
        b"\xc2\xb2",
        b"",
        str(MAX_BODY_BYTES + 1).encode(),
        b"99999999999999999999999",
        b"9" * 5_000,
    ]
)
#: How a body is framed: None posts it with requests (a true Content-Length); an int is sent
#: over a raw socket with a Content-Length that many bytes off; header lines are sent as given.
Framing: TypeAlias = int | tuple[bytes, ...] | None
framings: st.SearchStrategy[Framing] = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.integers(-50, 50),
    content_lengths.map(lambda value: (b"Content-Length: " + value,)),
    st.just((b"Content-Length: 8", b"Content-Length: 9")),
    st.just(CHUNKED),
)


# --- the fuzz test ---------------------------------------------------------------------------


@pytest.mark.slow
def test_no_signed_callback_however_hostile_gets_a_5xx_and_the_receiver_keeps_serving(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    session = requests.Session()
    statuses: dict[int | None, int] = {}

    def post(instruction_id: str, body: bytes, framing: Framing) -> int | None:
        path = f"{CALLBACK_PATH}/{quote(instruction_id, safe='')}/"
        path += sign(instruction_id, TEST_SECRET)
        if framing is None:
            response = session.post(stack.receiver_url + path, data=body, timeout=10)
            if response.headers.get("connection", "").lower() == "close":
                session.close()  # uvicorn closes after a 500: never reuse that connection
            return response.status_code
        if framing == CHUNKED:
            return raw_post(stack.receiver_url, path, framing, chunked(body), end_input=False)
        if isinstance(framing, int):
            headers = (f"Content-Length: {max(0, len(body) + framing)}".encode(),)
            return raw_post(stack.receiver_url, path, headers, body, end_input=framing > 0)
        # A length that is no number, or too big: refused, or waited for in vain.
        return raw_post(stack.receiver_url, path, framing, body, end_input=True)

    def crashes_since(first: int) -> list[str]:
        # Exceptions the app did not handle: uvicorn logs each, and answers 500 if it still can.
        return [
            repr(record.exc_info[1]) if record.exc_info else record.getMessage()
            for record in caplog.records[first:]
        ]

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None)
    @given(instruction_id=instruction_ids, body=bodies, framing=framings)
    def fuzz(instruction_id: str, body: bytes, framing: Framing) -> None:
        logged = len(caplog.records)
        status = post(instruction_id, body, framing)
        statuses[status] = statuses.get(status, 0) + 1
        assert status is None or status < 500, f"{status} for {len(body)} bytes: {body[:200]!r}"
        assert crashes_since(logged) == [], f"the app crashed on {len(body)} bytes: {body[:200]!r}"

    # Given a receiver over real HTTP with its broker up
    caplog.set_level(logging.ERROR)
    try:
        # When thousands of hostile, validly signed callbacks are posted
        fuzz()

        # Then none got a 5xx (asserted per case), none crashed the app, and a valid callback
        # still gets its 204
        valid = json.dumps(dtmf_callback(str(uuid.uuid4())))
        assert post(INSTRUCTION_ID, valid.encode(), None) == 204
    finally:
        session.close()
    assert crashes_since(0) == []
    # And the cases reached every step: parsing, validation and publishing
    assert {204, 400, 422} <= set(statuses), statuses
