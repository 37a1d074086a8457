"""VoiceApiClient against a real HTTP server on localhost: one test per row of the dispatch table.

Each failure test checks the exception class, whether it is safe to retry, whether CM may have
placed the call, and that the product token appears in no text of the exception.
"""

from __future__ import annotations

import gc
import json
import logging
import pickle
import socket
import struct
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cmvoice import __version__
from cmvoice.client import VoiceApiClient, parse_retry_after
from cmvoice.errors import (
    AuthenticationFailed,
    CmThrottled,
    CmUnavailable,
    CmUnreachable,
    OutcomeUnknown,
    RequestRefused,
    VoiceApiError,
)
from cmvoice.events import CallQueued
from cmvoice.instructions import (
    DtmfInstruction,
    Instruction,
    NotificationInstruction,
    OtpInstruction,
    parse_instruction,
)
from tests.support.docs_examples import (
    CALLEE,
    DTMF_INSTRUCTION,
    NOTIFICATION_INSTRUCTION,
    OTP_INSTRUCTION,
)

TOKEN = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
CALL_ID = "6d0f176e-00ac-4de2-a04d-b3f7c895adb0"
#: Seconds: short, so that the timeout tests take a fraction of a second.
READ_TIMEOUT_S = 0.3
CONNECT_TIMEOUT_S = 0.3


@dataclass
class Answer:
    """What the fake CM does with the next requests."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (cut short when the test ends).
    delay_s: float = 0.0
    #: Close the connection after reading the request, without answering.
    hang_up: bool = False


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FakeCm(ThreadingHTTPServer):
    """CM's Voice API as each test configures it: a real HTTP server on 127.0.0.1."""

    daemon_threads = False  # so that server_close() waits for every handler thread

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = Answer()
        self.received: list[Received] = []
        self.test_over = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/voiceapi/v2"

    def answer_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self.answer = Answer(
            status=status,
            body=json.dumps(data).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (read timeout) makes the late answer fail: expected here.
        pass

    def stop(self) -> None:
        self.test_over.set()
        self.shutdown()
        self.server_close()  # joins the handler threads
        self._thread.join()


class _Handler(BaseHTTPRequestHandler):
    server: FakeCm
    protocol_version = "HTTP/1.1"  # keep-alive, as CM's servers do
    timeout = 5  # an idle kept-alive connection never holds the test run

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        fake = self.server
        fake.received.append(Received(self.command, self.path, dict(self.headers.items()), body))
        answer = fake.answer
        if answer.delay_s:
            fake.test_over.wait(answer.delay_s)
        if answer.hang_up:
            self.close_connection = True
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST  # a redirected POST may come back as a GET: record it all the same

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_cm() -> Iterator[FakeCm]:
    server = FakeCm()
    yield server
    server.stop()


def make_client(api_url: str) -> VoiceApiClient:
    return VoiceApiClient(TOKEN, api_url=api_url, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))


@pytest.fixture
def client(fake_cm: FakeCm) -> Iterator[VoiceApiClient]:
    with make_client(fake_cm.url) as voice_api:
        yield voice_api
    # urllib3 closes a pool's sockets when the pool is collected; an exception kept by
    # pytest.raises pins the last response (and its pool) in a reference cycle until then.
    gc.collect()


@pytest.fixture
def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def resetting_server() -> Iterator[str]:
    """A server that reads the whole request, then resets the connection (TCP RST)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += connection.recv(65536)
            # Linger 0: close() sends a reset instead of a clean end of stream.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/voiceapi/v2"
    listener.close()
    thread.join(timeout=5)


@pytest.fixture
def full_backlog() -> Iterator[str]:
    """A listener whose accept queue is full, so new connections time out.

    Linux drops a SYN when the queue of a listening socket is full: the connect attempt then
    waits for a SYN-ACK that never comes, a connect timeout without leaving the loopback.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers: list[socket.socket] = []
    full = False
    for _ in range(8):
        probe = socket.socket()
        probe.settimeout(0.2)
        try:
            probe.connect(address)
        except TimeoutError:
            probe.close()
            full = True
            break
        fillers.append(probe)
    try:
        if not full:
            pytest.skip("this system accepts connections beyond a full backlog")
        yield f"http://127.0.0.1:{address[1]}/voiceapi/v2"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def notification() -> NotificationInstruction:
    return NotificationInstruction.model_validate(NOTIFICATION_INSTRUCTION)


def texts_of(error: BaseException) -> list[str]:
    """Every text a log line or a traceback could show of ``error`` and the errors it links."""
    texts = ["".join(traceback.format_exception(error))]
    for linked in (error, error.__cause__, error.__context__):
        if linked is not None:
            texts += [str(linked), repr(linked), repr(linked.args)]
            texts += [repr(value) for value in vars(linked).values()]
    return texts


def assert_token_hidden(error: BaseException, client: VoiceApiClient) -> None:
    for text in [*texts_of(error), repr(client), str(client)]:
        assert TOKEN not in text.lower()


def send_and_catch(client: VoiceApiClient, instruction: Instruction | None = None) -> VoiceApiError:
    with pytest.raises(VoiceApiError) as caught:
        client.send(instruction or notification())
    return caught.value


# Row 1: 2xx call-queued -> placed.


@pytest.mark.parametrize(
    ("model", "example", "path"),
    [
        (NotificationInstruction, NOTIFICATION_INSTRUCTION, "/voiceapi/v2/Notification"),
        (OtpInstruction, OTP_INSTRUCTION, "/voiceapi/v2/OTP"),
        (DtmfInstruction, DTMF_INSTRUCTION, "/voiceapi/v2/DTMF"),
    ],
    ids=["notification", "otp", "dtmf"],
)
def test_an_accepted_instruction_is_posted_as_cm_documents_and_returns_call_queued(
    fake_cm: FakeCm,
    client: VoiceApiClient,
    model: type[Instruction],
    example: dict[str, Any],
    path: str,
) -> None:
    # Given CM answers with one call-queued object
    queued = {"type": "call-queued", "call-id": CALL_ID, "callee": CALLEE, "success": True}
    fake_cm.answer_json(200, queued)
    instruction = model.model_validate(example)

    # When the instruction is sent
    answer = client.send(instruction)

    # Then the call is queued, and CM got the payload with the token and our user agent
    assert answer == [CallQueued.model_validate(queued)]
    (request,) = fake_cm.received
    assert request.method == "POST"
    assert request.path == path
    assert request.headers["X-CM-PRODUCTTOKEN"] == TOKEN
    assert request.headers["User-Agent"] == f"cmvoice/{__version__}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == instruction.to_payload()


def test_an_answer_with_an_array_of_call_queued_returns_each_of_them(
    fake_cm: FakeCm, client: VoiceApiClient
) -> None:
    # Given CM answers with an array of two call-queued objects
    other = "0b8c8d8e-1f20-4a3b-9c4d-5e6f7a8b9c0d"
    fake_cm.answer_json(
        201,
        [
            {"type": "call-queued", "call-id": CALL_ID, "success": True, "error": None},
            {"type": "call-queued", "call-id": other, "success": True, "error": None},
        ],
    )

    # When
    answer = client.send(notification())

    # Then
    assert [queued.call_id for queued in answer] == [CALL_ID, other]


def test_a_call_queued_answer_with_success_false_is_a_refusal(
    fake_cm: FakeCm, client: VoiceApiClient
) -> None:
    # Given CM answers 200, but says it did not queue the call
    fake_cm.answer_json(
        200,
        {"type": "call-queued", "call-id": CALL_ID, "success": False, "error": "Invalid callee"},
    )

    # When
    error = send_and_catch(client)

    # Then it is a refusal carrying CM's reason, not a placed call
    assert isinstance(error, RequestRefused)
    assert not error.retryable
    assert error.cm_message == "Invalid callee"
    assert_token_hidden(error, client)


def test_no_log_line_holds_the_token_or_the_numbers(
    fake_cm: FakeCm, client: VoiceApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    # Given every logger at DEBUG (requests and urllib3 included)
    caplog.set_level(logging.DEBUG)
    fake_cm.answer_json(200, {"type": "call-queued", "call-id": CALL_ID})
    instruction = parse_instruction("otp", OTP_INSTRUCTION)

    # When an OTP call is sent
    client.send(instruction)

    # Then something was logged, but not the token, the numbers or the code
    assert caplog.records
    assert TOKEN not in caplog.text
    assert CALLEE not in caplog.text
    assert "123abc" not in caplog.text


def test_a_2xx_answer_that_is_not_call_queued_means_the_outcome_is_unknown(
    fake_cm: FakeCm, client: VoiceApiClient
) -> None:
    # Given CM accepts the request but its answer cannot be read
    fake_cm.answer = Answer(status=200, body=b"OK")

    # When
    error = send_and_catch(client)

    # Then the call may exist: never a blind retry
    assert type(error) is OutcomeUnknown
    assert error.retryable is False
    assert error.may_have_placed is True
    assert error.status_code == 200
    assert_token_hidden(error, client)


# Row 2: connect error, DNS error, connection refused -> never reached CM, retry.


def test_a_refused_connection_is_unreachable_and_safe_to_retry(free_port: int) -> None:
    # Given nothing listens where the API should be
    with make_client(f"http://127.0.0.1:{free_port}/voiceapi/v2") as client:
        # When
        error = send_and_catch(client)

        # Then CM never saw the request: retry is safe
        assert type(error) is CmUnreachable
        assert error.retryable is True
        assert error.may_have_placed is False
        assert error.status_code is None
        assert_token_hidden(error, client)


def test_a_connect_timeout_is_unreachable_and_safe_to_retry(full_backlog: str) -> None:
    # Given a server that never completes the TCP handshake
    with make_client(full_backlog) as client:
        # When
        started = time.monotonic()
        error = send_and_catch(client)

        # Then it gave up after the connect timeout; CM never saw the request
        assert time.monotonic() - started < 5
        assert type(error) is CmUnreachable
        assert error.retryable is True
        assert error.may_have_placed is False
        assert "connect timeout" in str(error)
        assert_token_hidden(error, client)


# Row 3: 429 -> throttled, retry after Retry-After.


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [("7", 7, 7), ("http-date", 25, 30), (None, None, None)],
    ids=["seconds", "http-date", "absent"],
)
def test_a_429_is_throttled_with_the_parsed_retry_after(
    fake_cm: FakeCm,
    client: VoiceApiClient,
    retry_after: str | None,
    low: float | None,
    high: float | None,
) -> None:
    # Given CM throttles, asking us to wait in seconds or until a date (or not saying)
    if retry_after == "http-date":
        retry_after = formatdate(time.time() + 30, usegmt=True)
    headers = {"Retry-After": retry_after} if retry_after else {}
    fake_cm.answer_json(429, {"message": "Too many requests"}, headers)

    # When
    error = send_and_catch(client)

    # Then
    assert isinstance(error, CmThrottled)
    assert error.retryable is True
    assert error.may_have_placed is False
    assert error.status_code == 429
    if low is None:
        assert error.retry_after_s is None
    else:
        assert error.retry_after_s is not None
        assert low <= error.retry_after_s <= high  # type: ignore[operator]
    assert_token_hidden(error, client)


# Row 4: 502, 503, 504 -> CM not serving, retry.


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_gateway_or_unavailable_answer_is_retryable(
    fake_cm: FakeCm, client: VoiceApiClient, status: int
) -> None:
    # Given CM is not serving
    fake_cm.answer = Answer(status=status, body=b"<html>Service Unavailable</html>")

    # When
    error = send_and_catch(client)

    # Then
    assert type(error) is CmUnavailable
    assert error.retryable is True
    assert error.may_have_placed is False
    assert error.status_code == status
    assert_token_hidden(error, client)


# Row 5: 400, 404, 422 and other 4xx -> our request is wrong, fail with CM's message.


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_a_refused_request_fails_with_cms_message(
    fake_cm: FakeCm, client: VoiceApiClient, status: int
) -> None:
    # Given CM refuses the request and says why
    fake_cm.answer_json(status, {"message": "Prompt is too long"})

    # When
    error = send_and_catch(client)

    # Then it is final, and CM's words are kept
    assert type(error) is RequestRefused
    assert error.retryable is False
    assert error.may_have_placed is False
    assert error.status_code == status
    assert error.cm_message == "Prompt is too long"
    assert "Prompt is too long" in str(error)
    assert_token_hidden(error, client)


def test_cms_message_is_read_from_a_long_body_and_from_a_list_of_messages(
    fake_cm: FakeCm, client: VoiceApiClient
) -> None:
    # Given a long JSON error body with a list of messages and an error code
    fake_cm.answer_json(
        400,
        {"messages": ["caller is invalid", "prompt is empty"], "errorCode": 17, "pad": "x" * 900},
    )

    # When
    error = send_and_catch(client)

    # Then every part of CM's message is kept
    assert isinstance(error, RequestRefused)
    assert error.cm_message == "caller is invalid; prompt is empty; errorCode 17"


def test_an_error_body_that_echoes_the_number_code_and_token_is_masked(
    fake_cm: FakeCm, client: VoiceApiClient
) -> None:
    # Given CM's error message repeats what it was sent
    echo = f"Callee 0031612345678 ({CALLEE}) cannot get code 123ABC; token {TOKEN.upper()}"
    fake_cm.answer_json(422, {"message": echo})
    instruction = parse_instruction("otp", OTP_INSTRUCTION)

    # When
    error = send_and_catch(client, instruction)

    # Then the message still reads, but holds no number, code or token
    assert isinstance(error, RequestRefused)
    assert "cannot get code" in error.cm_message
    for text in texts_of(error):
        assert "612345678" not in text
        assert "123abc" not in text.lower()
        assert TOKEN not in text.lower()


def test_a_redirect_is_not_followed_so_the_token_never_leaves_for_another_host(
    fake_cm: FakeCm, client: VoiceApiClient
) -> None:
    # Given CM's address redirects elsewhere
    elsewhere = FakeCm()
    try:
        fake_cm.answer = Answer(status=302, headers={"Location": elsewhere.url + "/Notification"})

        # When
        error = send_and_catch(client)

        # Then the API URL is reported wrong, and the other host received nothing
        assert type(error) is RequestRefused
        assert error.retryable is False
        assert error.status_code == 302
        assert "check the API URL" in str(error)
        assert elsewhere.received == []
        assert_token_hidden(error, client)
    finally:
        elsewhere.stop()


# Row 6: 401, 403 -> bad product token, fail loudly.


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_token_fails_without_retry_and_without_showing_the_token(
    fake_cm: FakeCm, client: VoiceApiClient, status: int
) -> None:
    # Given CM refuses the product token, and echoes it back
    fake_cm.answer_json(status, {"message": f"Unknown product token {TOKEN}"})

    # When
    error = send_and_catch(client)

    # Then
    assert type(error) is AuthenticationFailed
    assert isinstance(error, RequestRefused)
    assert error.retryable is False
    assert error.may_have_placed is False
    assert error.status_code == status
    assert "Unknown product token" in error.cm_message
    assert_token_hidden(error, client)


# Row 7: read timeout, 500, connection reset after sending -> ambiguous.


def test_a_read_timeout_means_the_call_may_have_been_placed(
    fake_cm: FakeCm, client: VoiceApiClient
) -> None:
    # Given CM takes longer to answer than the read timeout
    fake_cm.answer = Answer(status=200, delay_s=10 * READ_TIMEOUT_S)

    # When
    started = time.monotonic()
    error = send_and_catch(client)

    # Then the request reached CM, the client gave up first, and the outcome is unknown
    assert time.monotonic() - started < 10 * READ_TIMEOUT_S
    assert len(fake_cm.received) == 1
    assert type(error) is OutcomeUnknown
    assert error.retryable is False
    assert error.may_have_placed is True
    assert_token_hidden(error, client)


def test_a_500_means_the_call_may_have_been_placed(fake_cm: FakeCm, client: VoiceApiClient) -> None:
    # Given CM fails with an internal error
    fake_cm.answer_json(500, {"message": "Internal error"})

    # When
    error = send_and_catch(client)

    # Then
    assert type(error) is OutcomeUnknown
    assert error.retryable is False
    assert error.may_have_placed is True
    assert error.status_code == 500
    assert_token_hidden(error, client)


def test_a_connection_closed_after_sending_means_the_call_may_have_been_placed(
    fake_cm: FakeCm, client: VoiceApiClient
) -> None:
    # Given CM reads the request, then closes the connection without a word
    fake_cm.answer = Answer(hang_up=True)

    # When
    error = send_and_catch(client)

    # Then
    assert len(fake_cm.received) == 1
    assert type(error) is OutcomeUnknown
    assert error.retryable is False
    assert error.may_have_placed is True
    assert_token_hidden(error, client)


def test_a_connection_reset_after_sending_means_the_call_may_have_been_placed(
    resetting_server: str,
) -> None:
    # Given CM reads the request, then resets the connection
    with make_client(resetting_server) as client:
        # When
        error = send_and_catch(client)

        # Then
        assert type(error) is OutcomeUnknown
        assert error.retryable is False
        assert error.may_have_placed is True
        assert_token_hidden(error, client)


# The token itself.


@pytest.mark.parametrize(
    "token",
    ["my-secret-product-token", "3f2504e04f8911d39a0c0305e82c3301", "", TOKEN + "0"],
    ids=["words", "no hyphens", "empty", "one digit too many"],
)
def test_a_token_that_is_not_a_guid_is_refused_at_construction_without_echoing_it(
    token: str,
) -> None:
    # Given / When
    with pytest.raises(ValueError, match="must be a GUID") as caught:
        VoiceApiClient(token)

    # Then
    if token:
        assert token not in str(caught.value)
        assert token not in repr(caught.value)


def test_the_clients_repr_hides_the_token() -> None:
    # Given / When
    with VoiceApiClient(TOKEN.upper(), api_url="http://127.0.0.1:9/voiceapi/v2") as client:
        shown = repr(client)

    # Then
    assert TOKEN not in shown.lower()
    assert "http://127.0.0.1:9/voiceapi/v2" in shown


# The exceptions travel between processes.


@pytest.mark.parametrize(
    "error",
    [
        CmThrottled("POST /OTP: CM answered 429", retry_after_s=7.0),
        RequestRefused("POST /OTP: CM answered 400", status_code=400, cm_message="bad"),
        AuthenticationFailed("POST /OTP: CM answered 401", status_code=401),
        OutcomeUnknown("POST /OTP: CM answered 500", status_code=500, body="oops"),
        CmUnreachable("POST /OTP: could not connect"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_each_classified_error_survives_pickling_with_its_attributes(
    error: VoiceApiError,
) -> None:
    # Given an error as a worker process raises it
    # When Celery pickles it to another process
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)

    # Then it is the same error, with the same decision data
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)
    assert (copy.retryable, copy.may_have_placed) == (error.retryable, error.may_have_placed)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("1.5", 1.5),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:28:00 -0000", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("inf", None),
        ("nan", None),
        ("-5", None),
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(value: str, expected: float | None) -> None:
    # Given a moment 30 seconds before 07:28:00 GMT on 21 Oct 2015
    now = 1445412450.0

    # When / Then
    assert parse_retry_after(value, now=now) == expected
