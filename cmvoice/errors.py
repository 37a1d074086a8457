"""The exception tree of cmvoice: one base class, one leaf per way a call can go wrong.

::

    CmVoiceError
    ├── InvalidInstruction      an instruction breaks a documented rule (field, rule, value)
    ├── InvalidEvent            a callback body is not a CM event we understand
    ├── ConfigurationError      a CMVOICE_ variable is missing or wrong
    ├── BrokerUnavailable       Redis or the broker cannot be reached
    ├── CampaignError           a campaign cannot start or change (unknown id, bad file, state)
    ├── CallFailed              a dispatch ended its call FAILED for good (Celery FAILURE)
    ├── CallNotAllowed          a calling rule refuses the call (suppressed, country, ...)
    └── VoiceApiError           a POST to CM did not end in call-queued
        ├── CmUnreachable       connect/DNS error, refused: never reached CM   (retry)
        ├── CmThrottled         429, with the parsed Retry-After              (retry later)
        ├── CmUnavailable       502, 503, 504: CM is not serving               (retry)
        ├── RequestRefused      400, 404, 422, other 4xx: our request is wrong (fail)
        │   └── AuthenticationFailed  401, 403: the product token is bad       (fail loudly)
        └── OutcomeUnknown      read timeout, 500, reset after sending:
                                 the call may have been placed                 (never blind retry)

Every ``VoiceApiError`` says whether sending the same instruction again is safe
(``retryable``) and whether CM may have placed the call (``may_have_placed``). No exception text
ever holds the product token, an OTP code or a full phone number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class CmVoiceError(Exception):
    """Base class of every error raised by cmvoice."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Celery pickles exceptions between processes. The default reduction calls
        # ``cls(*args)``, which fails for keyword-only arguments (retry_after_s, status_code);
        # rebuild without __init__ and restore the attributes instead.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(
    cls: type[CmVoiceError], args: tuple[object, ...], state: dict[str, Any]
) -> CmVoiceError:
    """Unpickle a cmvoice error: its args and attributes, without calling __init__ again."""
    error = cls.__new__(cls, *args)
    error.__dict__.update(state)
    return error


#: The value of a FieldError about a field that was not given at all.
NOTHING = "nothing"


@dataclass(frozen=True)
class FieldError:
    """One broken rule: which field, which rule, and the (masked) value that broke it."""

    field: str
    rule: str
    value: str

    def __str__(self) -> str:
        # An empty value means a rule about the input as a whole (a row that is not CSV).
        got = f" (got {self.value})" if self.value else ""
        return f"{self.field}: {self.rule}{got}"


class InvalidInstruction(CmVoiceError, ValueError):
    """An instruction breaks one or more documented rules; ``errors`` lists each of them."""

    def __init__(self, kind: str, errors: Sequence[FieldError]) -> None:
        self.kind = kind
        self.errors = list(errors)
        lines = "\n".join(f"  - {error}" for error in self.errors)
        super().__init__(f"invalid {kind} instruction ({len(self.errors)} error(s)):\n{lines}")


class InvalidEvent(CmVoiceError, ValueError):
    """A callback body is malformed or of an unknown type."""


class ConfigurationError(CmVoiceError):
    """A setting is missing or invalid; the message names the variable."""


class CallNotAllowed(CmVoiceError, ValueError):
    """A calling rule refuses the call; nothing was queued.

    Attributes:
        rule: which rule: ``suppressed``, ``country``, ``per_number_limit``, ``cooldown``,
            ``window`` or ``deadline``.
        field: the instruction field the rule looked at (``callee``).
        value: that field's value, masked (``+31******678``).
    """

    def __init__(self, rule: str, reason: str, *, field: str = "callee", value: str = "") -> None:
        self.rule = rule
        self.field = field
        self.value = value
        self.reason = reason
        shown = f" (got {value})" if value else ""
        super().__init__(f"call not allowed by rule {rule!r}: {field}: {reason}{shown}")


class CallFailed(CmVoiceError):
    """A dispatch ended its call FAILED for good: CM refused it, the token is bad, or retries
    ran out. Raised after the ledger is written, so that Celery (and Flower) count a FAILURE;
    the message says why, with the number masked."""


class BrokerUnavailable(CmVoiceError):
    """The broker or the Redis that holds the ledger cannot be reached."""


class CampaignError(CmVoiceError):
    """A campaign cannot be started, resumed or changed; the message says why and what to do."""


class VoiceApiError(CmVoiceError):
    """A POST to CM's Voice API did not end in call-queued.

    Attributes:
        retryable: sending the same instruction again is safe (CM did not place the call).
        may_have_placed: CM may have placed the call although we got no answer.
        status_code: the HTTP status CM answered, when there was an answer.
    """

    retryable: bool = False
    may_have_placed: bool = False

    def __init__(self, message: str, *, status_code: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class CmUnreachable(VoiceApiError):
    """The request never reached CM (DNS, connect timeout, connection refused)."""

    retryable = True


class CmThrottled(VoiceApiError):
    """CM answered 429; ``retry_after_s`` is how long it asked us to wait (None if it did not)."""

    retryable = True

    def __init__(
        self, message: str, *, retry_after_s: float | None, status_code: int = 429, body: str = ""
    ) -> None:
        super().__init__(message, status_code=status_code, body=body)
        self.retry_after_s = retry_after_s


class CmUnavailable(VoiceApiError):
    """CM answered 502, 503 or 504: it is not serving now, and did not place the call."""

    retryable = True


class RequestRefused(VoiceApiError):
    """CM refused the request as wrong (4xx); ``cm_message`` is what CM said about it."""

    def __init__(
        self, message: str, *, status_code: int, body: str = "", cm_message: str = ""
    ) -> None:
        super().__init__(message, status_code=status_code, body=body)
        self.cm_message = cm_message


class AuthenticationFailed(RequestRefused):
    """CM refused the product token (401 or 403). Retrying cannot help."""


class OutcomeUnknown(VoiceApiError):
    """No usable answer after the request was sent: the call may or may not have been placed."""

    may_have_placed = True
