"""VoiceApiClient: the only place that talks HTTP to CM, and where every outcome is classified."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self

import phonenumbers
import requests
import urllib3
from requests.adapters import HTTPAdapter

from cmvoice._version import __version__
from cmvoice.config import DEFAULT_API_URL, PRODUCT_TOKEN_SHAPE
from cmvoice.errors import (
    AuthenticationFailed,
    CmThrottled,
    CmUnavailable,
    CmUnreachable,
    InvalidEvent,
    OutcomeUnknown,
    RequestRefused,
    VoiceApiError,
)
from cmvoice.events import CallQueued, parse_call_queued
from cmvoice.instructions import Instruction
from cmvoice.privacy import mask_number

logger = logging.getLogger(__name__)

#: Seconds to wait for a TCP connection to CM; a connect timeout means CM never saw the request.
DEFAULT_CONNECT_TIMEOUT_S = 3.05
#: Seconds to wait for CM's answer once the request is sent; past it the outcome is unknown.
DEFAULT_READ_TIMEOUT_S = 10.0
#: Connections kept open to CM, per client: one per worker thread is plenty.
DEFAULT_POOL_SIZE = 64
#: Characters of CM's error body kept in an exception.
MAX_BODY_CHARS = 500

_DELAY_SECONDS = re.compile(r"\d+(?:\.\d+)?")
#: What a repr or an exception text shows instead of the product token.
HIDDEN = "********"


class VoiceApiClient:
    """Sends instructions to CM's Voice API over one pooled ``requests.Session``.

    Args:
        product_token: the account's product token (a GUID). Never shown in a repr or a message.
        api_url: the API base; point it at ``cmvoice simulator`` to develop without CM.
        timeout: ``(connect_s, read_s)``, or one number for the read timeout.
        session: a session to reuse; one is made otherwise.
    """

    def __init__(
        self,
        product_token: str,
        api_url: str = DEFAULT_API_URL,
        timeout: float | tuple[float, float] = (DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_READ_TIMEOUT_S),
        session: requests.Session | None = None,
    ) -> None:
        if not isinstance(product_token, str) or not PRODUCT_TOKEN_SHAPE.fullmatch(product_token):
            raise ValueError(
                "product_token: must be a GUID such as 00000000-0000-0000-0000-000000000000 "
                "(value hidden)"
            )
        self._token = product_token
        self.api_url = api_url.rstrip("/")
        self.timeout = (
            timeout if isinstance(timeout, tuple) else (DEFAULT_CONNECT_TIMEOUT_S, timeout)
        )
        self._session = session or self._new_session()

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        # No transparent retries: whether a POST may be repeated is decided in one place
        # (the dispatch task), from the exception raised here.
        adapter = HTTPAdapter(
            pool_connections=4, pool_maxsize=DEFAULT_POOL_SIZE, max_retries=0, pool_block=False
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def __repr__(self) -> str:
        return f"VoiceApiClient(api_url={self.api_url!r}, product_token='{HIDDEN}')"

    def close(self) -> None:
        """Close the session's pooled connections."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def send(self, instruction: Instruction) -> list[CallQueued]:
        """POST ``instruction`` to its app; return CM's call-queued answer(s).

        Raises:
            VoiceApiError: a subclass per way the POST can fail (see ``cmvoice.errors``).
        """
        return self.send_payload(instruction.app, instruction.to_payload())

    def send_payload(self, app: str, payload: dict[str, Any]) -> list[CallQueued]:
        """POST an already validated payload to ``/{app}``; see ``send``."""
        url = f"{self.api_url}/{app}"
        headers = {
            "X-CM-PRODUCTTOKEN": self._token,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"cmvoice/{__version__}",
        }
        started = time.monotonic()
        try:
            # No redirects: a redirected POST turns into a GET, and requests would carry the
            # X-CM-PRODUCTTOKEN header to whatever host the Location names.
            response = self._session.post(
                url,
                data=json.dumps(payload),
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise _classify_transport_error(exc, app) from None
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.debug("POST /%s -> %s in %.0f ms", app, response.status_code, elapsed_ms)
        # CM's answer may echo what it was sent: keep the token, numbers and code out of it.
        text = _redact(response.text, self._token, payload)
        if 200 <= response.status_code < 300:
            try:
                answers = parse_call_queued(response.content)
            except InvalidEvent as exc:
                # CM answered 2xx, so it accepted the instruction, but we cannot read the answer.
                raise OutcomeUnknown(
                    _redact(f"CM accepted /{app} but its answer is unreadable: {exc}", "", payload),
                    status_code=response.status_code,
                    body=text[:MAX_BODY_CHARS],
                ) from None
            refused = [answer for answer in answers if not answer.success]
            if refused:
                # CM answered call-queued with success false: it did not queue that call.
                reason = _redact(refused[0].error or "no reason given", self._token, payload)
                raise RequestRefused(
                    f"POST /{app}: CM did not queue the call: {reason}",
                    status_code=response.status_code,
                    body=text[:MAX_BODY_CHARS],
                    cm_message=reason,
                )
            return answers
        raise classify_status(response.status_code, text, response.headers, app)


def _redact(text: str, token: str, payload: Mapping[str, Any]) -> str:
    """``text`` without the product token, the payload's phone numbers or its OTP code."""
    if token:
        text = re.sub(re.escape(token), HIDDEN, text, flags=re.IGNORECASE)
    for field in ("callee", "caller"):
        number = payload.get(field)
        if not isinstance(number, str):
            continue
        try:
            national = str(phonenumbers.national_significant_number(phonenumbers.parse(number)))
        except phonenumbers.NumberParseException:
            continue
        # Any digits ending in the national number: +316..., 00316..., 06..., 316...
        text = re.sub(rf"\+?\d*{national}(?!\d)", mask_number(number), text)
    code = payload.get("code")
    if isinstance(code, str) and code:
        # Whole words only: a short code must not mangle the rest of CM's message.
        code_word = rf"(?<![A-Za-z0-9]){re.escape(code)}(?![A-Za-z0-9])"
        text = re.sub(code_word, "<code>", text, flags=re.IGNORECASE)
    return text


def _classify_transport_error(exc: requests.RequestException, app: str) -> VoiceApiError:
    """Map a requests exception to never-reached (safe to retry) or unknown (maybe placed)."""
    name = type(exc).__name__
    if isinstance(exc, requests.ConnectTimeout):
        return CmUnreachable(f"POST /{app}: connect timeout, CM never received the request")
    if isinstance(exc, requests.ReadTimeout):
        return OutcomeUnknown(f"POST /{app}: no answer within the read timeout; may be placed")
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        inner = getattr(reason, "reason", reason)
        if isinstance(
            inner, urllib3.exceptions.NewConnectionError | urllib3.exceptions.NameResolutionError
        ):
            return CmUnreachable(f"POST /{app}: could not connect to CM ({type(inner).__name__})")
        # The connection broke after the request went out: CM may have acted on it.
        return OutcomeUnknown(
            f"POST /{app}: connection broken after sending ({name}); may be placed"
        )
    if isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema,
    ):
        return CmUnreachable(f"POST /{app}: invalid API URL ({name})")
    return OutcomeUnknown(f"POST /{app}: {name}; the call may have been placed")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: a number of seconds or an HTTP date; None if absent."""
    if not value:
        return None
    value = value.strip()
    # Digits only (RFC 9110 delay-seconds): float() would also take "inf", "nan" and "1_0".
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        # "-0000" parses as a naive datetime; HTTP dates are always GMT.
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def _cm_message(body: str) -> str:
    """The human part of CM's error body (``message``, ``messages[]``, ``details``...)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:MAX_BODY_CHARS]
    if not isinstance(data, dict):
        return body.strip()[:MAX_BODY_CHARS]
    parts: list[str] = []
    for key in ("message", "Message", "details", "error"):
        if isinstance(data.get(key), str) and data[key]:
            parts.append(data[key])
    messages = data.get("messages")
    if isinstance(messages, list):
        parts.extend(str(item) for item in messages)
    code = data.get("errorCode")
    if code is not None:
        parts.append(f"errorCode {code}")
    return "; ".join(parts)[:MAX_BODY_CHARS] or body.strip()[:MAX_BODY_CHARS]


def classify_status(
    status: int, body: str, headers: Any, app: str = "instruction"
) -> VoiceApiError:
    """The exception for a non-2xx answer, per the dispatch table (docs/architecture.md)."""
    # Read CM's message from the whole body: a cut JSON document no longer parses.
    message = _cm_message(body)
    body = body[:MAX_BODY_CHARS]
    text = f"POST /{app}: CM answered {status}" + (f": {message}" if message else "")
    if status == 429:
        return CmThrottled(
            text, retry_after_s=parse_retry_after(headers.get("Retry-After")), body=body
        )
    if 300 <= status < 400:
        # Redirects are not followed (see send_payload): the API URL is wrong, fix it.
        location = headers.get("Location") or "?"
        return RequestRefused(
            f"{text}; redirected to {location}: check the API URL (CMVOICE_API_URL)",
            status_code=status,
            body=body,
            cm_message=message,
        )
    if status in (502, 503, 504):
        return CmUnavailable(text, status_code=status, body=body)
    if status in (401, 403):
        return AuthenticationFailed(
            text + " (check CMVOICE_PRODUCT_TOKEN)",
            status_code=status,
            body=body,
            cm_message=message,
        )
    if 400 <= status < 500:
        return RequestRefused(text, status_code=status, body=body, cm_message=message)
    # 500 and anything unexpected: CM may have queued the call before failing.
    return OutcomeUnknown(text + "; the call may have been placed", status_code=status, body=body)
