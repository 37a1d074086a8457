"""What CM sends back: call-queued answers and the *-finished callbacks, and ``parse_event``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import IntEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
)

from cmvoice.bounded_json import JsonLimitExceeded, loads_bounded
from cmvoice.errors import InvalidEvent
from cmvoice.privacy import mask_number, quote_value
from cmvoice.validation_errors import describe_validation_error, dotted_location

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails


class ResultCode(IntEnum):
    """The documented result codes of a finished call."""

    CANCELLED = 9  # not answered within the ringing timeout
    FINISHED = 10  # answered, and the app ran to its end
    FAILED = 11  # the call could not be made
    REJECTED = 12  # refused by the callee or the carrier


def _assume_utc(value: object) -> object:
    # CM's examples all end in Z; a timestamp without an offset is taken as UTC, not refused.
    if isinstance(value, str) and value and value[-1].isdigit() and "+" not in value[10:]:
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def format_timestamp(value: datetime) -> str:
    """CM's timestamp format: UTC, milliseconds, a ``Z`` (``2018-02-09T11:00:31.752Z``)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _representable_in_utc(value: datetime) -> datetime:
    # format_timestamp writes UTC, and near datetime's ends a time may have no UTC equivalent
    # (0001-01-01T00:00:00+01:00): refuse it here, not crash when the event is sent on.
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None
    return value


Timestamp: TypeAlias = Annotated[
    AwareDatetime,
    BeforeValidator(_assume_utc),
    AfterValidator(_representable_in_utc),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]


def _lowercase(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


CallId: TypeAlias = Annotated[
    str,
    BeforeValidator(_lowercase),
    Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]


class _CmModel(BaseModel):
    """What CM sends: hyphenated names, unknown fields tolerated (CM may add some)."""

    model_config = ConfigDict(
        extra="ignore",
        alias_generator=lambda name: name.replace("_", "-"),
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        hide_input_in_errors=True,
        frozen=True,
    )

    def to_payload(self) -> dict[str, Any]:
        """The JSON body as CM sends it."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class CallResult(_CmModel):
    """How a call ended: CM's code and description, and the SIP disconnect cause if given."""

    code: int
    description: str = ""
    sip_disconnect_code: str | None = None
    sip_disconnect_reason: str | None = None

    @property
    def result_code(self) -> ResultCode | None:
        """The code as a ResultCode, or None for a code the documentation does not list."""
        try:
            return ResultCode(self.code)
        except ValueError:
            return None


class _Typed(_CmModel):
    """An event with a ``type`` discriminator, always part of its payload."""

    def model_post_init(self, context: Any, /) -> None:
        # ``type`` has a default; mark it as set so that to_payload() never drops it.
        self.__pydantic_fields_set__.add("type")


class _Finished(_Typed):
    call_id: CallId
    instruction_id: str | None = Field(default=None, max_length=64)
    caller: str = Field(default="anonymous", max_length=25, repr=False)
    callee: str = Field(max_length=25, repr=False)
    result: CallResult
    started_on: Timestamp
    answered_on: Timestamp | None = None
    finished_on: Timestamp


class NotificationFinished(_Finished):
    """Callback of the Notification app."""

    type: Literal["notification-finished"] = "notification-finished"


class OtpFinished(_Finished):
    """Callback of the OTP app."""

    type: Literal["otp-finished"] = "otp-finished"


class DtmfFinished(_Finished):
    """Callback of the Request-DTMF app; ``digits`` is empty when no valid input was given."""

    type: Literal["dtmf-finished"] = "dtmf-finished"
    digits: str = Field(default="", max_length=64)


class CallQueued(_Typed):
    """CM's answer to an accepted instruction: the call is queued under ``call_id``."""

    type: Literal["call-queued"] = "call-queued"
    call_id: CallId
    instruction_id: str | None = None
    caller: str | None = Field(default=None, repr=False)
    callee: str | None = Field(default=None, repr=False)
    success: bool = True
    error: str | None = None


FinishedEvent: TypeAlias = NotificationFinished | OtpFinished | DtmfFinished
Event: TypeAlias = FinishedEvent | CallQueued

#: Event classes by their ``type``.
EVENT_TYPES: dict[str, type[Event]] = {
    "notification-finished": NotificationFinished,
    "otp-finished": OtpFinished,
    "dtmf-finished": DtmfFinished,
    "call-queued": CallQueued,
}
_QUEUED_ANSWER: TypeAdapter[list[CallQueued] | CallQueued] = TypeAdapter(
    list[CallQueued] | CallQueued
)


def _event_value(error: ErrorDetails) -> str:
    value = error.get("input")
    if error["loc"] in (("callee",), ("caller",)) and isinstance(value, str):
        return mask_number(value)
    return quote_value(value)


def _describe(exc: ValidationError) -> str:
    errors = describe_validation_error(
        exc, name_field=lambda error: dotted_location(error) or "(body)", show_value=_event_value
    )
    return "; ".join(str(error) for error in errors)


def _json_type(data: object) -> str:
    """The JSON name of a parsed value's type, for messages (``array``, not ``list``)."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(data), "number" if isinstance(data, int | float) else type(data).__name__)


def _load_json(raw: bytes | str | dict[str, Any] | list[Any]) -> Any:
    if isinstance(raw, dict | list):
        return raw
    if not isinstance(raw, bytes | bytearray | str):
        raise InvalidEvent(f"an event must be JSON text or a dict, got {type(raw).__name__}")
    try:
        # Bounded: a body nested too deep or with a huge integer is refused, not a crash.
        return loads_bounded(raw)
    except JsonLimitExceeded as exc:
        raise InvalidEvent(str(exc)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent(f"malformed JSON: {exc}") from None


def parse_event(raw: bytes | str | dict[str, Any]) -> Event:
    """Parse one event CM sent, choosing its class by ``type``.

    Raises:
        InvalidEvent: the body is not JSON, not an object, of an unknown type, or breaks the
            event's schema. The message names the field; phone numbers are masked.
    """
    data = _load_json(raw)
    if not isinstance(data, dict):
        raise InvalidEvent(f"an event must be a JSON object, got {_json_type(data)}")
    event_type = data.get("type")
    if event_type is None:
        raise InvalidEvent("type: field required (got nothing)")
    model = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        raise InvalidEvent(
            f"type: unknown event type {quote_value(event_type)}; "
            f"expected one of {', '.join(EVENT_TYPES)}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid {event_type} event: {_describe(exc)}") from None


def parse_call_queued(raw: bytes | str | dict[str, Any] | list[Any]) -> list[CallQueued]:
    """Parse CM's answer to an instruction: one call-queued object or an array of them."""
    data = _load_json(raw)
    try:
        answer = _QUEUED_ANSWER.validate_python(data)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid call-queued answer: {_describe(exc)}") from None
    if not answer:
        # An empty array names no call: there is no call-id to wait for.
        raise InvalidEvent("invalid call-queued answer: an empty array")
    return answer if isinstance(answer, list) else [answer]
