"""classify_status and parse_retry_after: CM's HTTP answers to error classes, without a network.

The redaction of CM's echoes is checked through ``VoiceApiClient.send_payload`` over a requests
transport adapter that answers in memory, as CM would over the wire.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from email.utils import formatdate
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from cmvoice.client import (
    HIDDEN,
    MAX_BODY_CHARS,
    VoiceApiClient,
    classify_status,
    parse_retry_after,
)
from cmvoice.errors import (
    AuthenticationFailed,
    CmThrottled,
    CmUnavailable,
    OutcomeUnknown,
    RequestRefused,
    VoiceApiError,
)

TOKEN = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
CALLEE = "+31612345678"
CALLER = "+31761234567"
CODE = "123ABC"
#: 07:27:30 GMT on 21 Oct 2015: 30 seconds before the HTTP date used below.
NOW = 1445412450.0


def headers(**values: str) -> CaseInsensitiveDict[str]:
    return CaseInsensitiveDict({name.replace("_", "-"): value for name, value in values.items()})


@pytest.mark.parametrize(
    ("status", "error_class", "retryable", "may_have_placed"),
    [
        (301, RequestRefused, False, False),
        (307, RequestRefused, False, False),
        (400, RequestRefused, False, False),
        (401, AuthenticationFailed, False, False),
        (403, AuthenticationFailed, False, False),
        (404, RequestRefused, False, False),
        (409, RequestRefused, False, False),
        (422, RequestRefused, False, False),
        (429, CmThrottled, True, False),
        (500, OutcomeUnknown, False, True),
        (501, OutcomeUnknown, False, True),
        (502, CmUnavailable, True, False),
        (503, CmUnavailable, True, False),
        (504, CmUnavailable, True, False),
        (599, OutcomeUnknown, False, True),
    ],
)
def test_each_status_becomes_its_error_class_with_its_retry_and_placed_flags(
    status: int, error_class: type[VoiceApiError], retryable: bool, may_have_placed: bool
) -> None:
    # Given CM answered this status with a JSON message
    body = json.dumps({"message": "something is off"})

    # When it is classified
    error = classify_status(status, body, headers(), "OTP")

    # Then it is the class of the dispatch table, says what CM said and keeps the status
    assert type(error) is error_class
    assert (error.retryable, error.may_have_placed) == (retryable, may_have_placed)
    assert error.status_code == status
    assert str(error).startswith(f"POST /OTP: CM answered {status}: something is off")


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_names_the_variable_to_check(status: int) -> None:
    # Given CM refused the product token
    # When
    error = classify_status(status, '{"message": "Unauthorized"}', headers())

    # Then the reader knows which setting to fix
    assert "CMVOICE_PRODUCT_TOKEN" in str(error)
    assert isinstance(error, AuthenticationFailed)
    assert error.cm_message == "Unauthorized"


def test_a_redirect_names_where_it_pointed_and_the_setting_to_fix() -> None:
    # Given CM's address answered with a redirect
    # When
    error = classify_status(301, "", headers(Location="https://elsewhere.example/v2"))

    # Then the message says where to, and that the API URL is wrong
    assert "redirected to https://elsewhere.example/v2" in str(error)
    assert "CMVOICE_API_URL" in str(error)


def test_a_500_says_the_call_may_have_been_placed() -> None:
    # Given CM failed inside
    # When
    error = classify_status(500, "Internal Server Error", headers())

    # Then the message warns that CM may have placed the call
    assert str(error).endswith("; the call may have been placed")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"message": "caller is invalid"}', "caller is invalid"),
        ('{"Message": "prompt is empty"}', "prompt is empty"),
        ('{"messages": ["a", "b"], "errorCode": 17}', "a; b; errorCode 17"),
        ('{"details": "too long", "error": "bad"}', "too long; bad"),
        ('{"unrelated": 1}', '{"unrelated": 1}'),
        ('["not", "an", "object"]', '["not", "an", "object"]'),
        ("  plain text from a proxy  ", "plain text from a proxy"),
    ],
)
def test_cms_message_is_read_from_the_fields_cm_uses(body: str, message: str) -> None:
    # Given CM's error body in one of its shapes
    # When a refusal is classified
    error = classify_status(422, body, headers())

    # Then the human part is kept as CM's message
    assert isinstance(error, RequestRefused)
    assert error.cm_message == message


def test_an_empty_body_leaves_just_the_status_in_the_message() -> None:
    # Given CM answered 404 with no body
    # When
    error = classify_status(404, "", headers(), "DTMF")

    # Then
    assert str(error) == "POST /DTMF: CM answered 404"


def test_a_long_body_is_cut_but_its_message_is_read_whole() -> None:
    # Given a JSON body longer than what an exception keeps
    body = json.dumps({"message": "bad prompt", "padding": "x" * (2 * MAX_BODY_CHARS)})

    # When
    error = classify_status(400, body, headers())

    # Then the message still parses and the kept body is cut to the limit
    assert isinstance(error, RequestRefused)
    assert error.cm_message == "bad prompt"
    assert len(error.body) == MAX_BODY_CHARS


@pytest.mark.parametrize(
    ("retry_after", "expected_s"),
    [(None, None), ("7", 7.0), ("0", 0.0), ("soon", None)],
)
def test_a_429_carries_the_wait_cm_asked_for_in_seconds(
    retry_after: str | None, expected_s: float | None
) -> None:
    # Given CM throttled us, with or without a Retry-After in seconds
    answer = headers(Retry_After=retry_after) if retry_after is not None else headers()

    # When
    error = classify_status(429, '{"message": "slow down"}', answer)

    # Then the wait is CM's, or None when CM did not say (or said nothing readable)
    assert isinstance(error, CmThrottled)
    assert error.retry_after_s == expected_s


def test_a_429_with_an_http_date_waits_until_that_moment() -> None:
    # Given CM asks us to come back at a moment a minute from now
    answer = headers(Retry_After=formatdate(time.time() + 60, usegmt=True))

    # When
    error = classify_status(429, "", answer)

    # Then the wait is that minute (HTTP dates have whole seconds; a slow machine takes a few)
    assert isinstance(error, CmThrottled)
    assert error.retry_after_s is not None
    assert 55 <= error.retry_after_s <= 60


@pytest.mark.parametrize(
    ("value", "expected_s"),
    [
        ("120", 120.0),
        (" 120 ", 120.0),
        ("2.5", 2.5),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2015 08:27:30 GMT", 3600.0),
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),
        ("1e3", None),
        ("1_0", None),
        ("+5", None),
        ("tomorrow", None),
        (None, None),
        ("", None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date_and_anything_else_is_none(
    value: str | None, expected_s: float | None
) -> None:
    # Given a Retry-After read at a fixed moment
    # When / Then: a date in the past means "now", never a negative wait
    assert parse_retry_after(value, now=NOW) == expected_s


# --- nothing CM echoes shows the token, the numbers or the code ------------------------------


class CmAnswers(BaseAdapter):
    """A requests transport that answers every request in memory with one fixed answer."""

    def __init__(self, status: int, body: str, answer_headers: Mapping[str, str]) -> None:
        super().__init__()
        self.status = status
        self.body = body
        self.answer_headers = answer_headers

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = self.status
        response._content = self.body.encode()
        response.headers = CaseInsensitiveDict(self.answer_headers)
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def send_to_answering_cm(status: int, echo: str) -> VoiceApiError:
    """POST an OTP payload to a CM that answers ``status`` with ``echo`` as its message."""
    session = requests.Session()
    session.mount("https://", CmAnswers(status, json.dumps({"message": echo}), {}))
    payload = {"callee": CALLEE, "caller": CALLER, "code": CODE, "voice": {"language": "en-GB"}}
    with VoiceApiClient(TOKEN, session=session) as client, pytest.raises(VoiceApiError) as caught:
        client.send_payload("OTP", payload)
    return caught.value


def texts_of(error: VoiceApiError) -> list[str]:
    return [str(error), repr(error), error.body, getattr(error, "cm_message", "")]


@pytest.mark.parametrize("status", [400, 401, 422, 429, 500, 503])
@pytest.mark.parametrize(
    ("echo", "secret"),
    [
        (f"callee {CALLEE} is blocked", "612345678"),
        ("callee 0031612345678 is blocked", "612345678"),
        ("callee 31612345678 is blocked", "612345678"),
        ("callee 0612345678 is blocked", "612345678"),
        ("caller +31761234567 is not yours", "761234567"),
        (f"token {TOKEN} is unknown", TOKEN),
        (f"token {TOKEN.upper()} is unknown", TOKEN),
        (f"code {CODE} is too long", CODE.lower()),
        (f"code {CODE.lower()} is too long", CODE.lower()),
    ],
)
def test_an_echo_of_the_token_a_number_or_the_code_never_reaches_an_exception(
    status: int, echo: str, secret: str
) -> None:
    # Given CM's error message repeats a secret or a number it was sent, in any spelling
    # When the client classifies the answer
    error = send_to_answering_cm(status, echo)

    # Then no text of the exception holds it, and the rest of the message still reads
    for text in texts_of(error):
        assert secret not in text.lower()
    assert echo.split()[0] in str(error)


def test_a_masked_echo_shows_the_recognisable_ends_of_the_number_and_a_placeholder() -> None:
    # Given CM echoes the callee, the token and the code in one message
    echo = f"callee {CALLEE} with token {TOKEN} got code {CODE}"

    # When
    error = send_to_answering_cm(422, echo)

    # Then each is replaced by its masked form
    assert isinstance(error, RequestRefused)
    assert error.cm_message == f"callee +31******678 with token {HIDDEN} got code <code>"


def test_a_short_code_is_masked_as_a_word_without_mangling_other_numbers() -> None:
    # Given an OTP code that also occurs inside a longer number of CM's message
    session = requests.Session()
    echo = "errorCode 1234: code 12 rejected"
    session.mount("https://", CmAnswers(422, json.dumps({"message": echo}), {}))
    payload = {"callee": CALLEE, "caller": CALLER, "code": "12"}

    # When
    with VoiceApiClient(TOKEN, session=session) as client, pytest.raises(RequestRefused) as caught:
        client.send_payload("OTP", payload)

    # Then only the code itself is replaced
    assert caught.value.cm_message == "errorCode 1234: code <code> rejected"
