"""The wire contract: pydantic models of CM's Notification, OTP and Request-DTMF instructions.

Every rule of CM's documentation is checked here, before anything is queued. Python names are
snake_case, JSON names are CM's hyphenated names; both are accepted as input, and
``to_payload()`` gives the exact body CM receives.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, TypeAlias
from urllib.parse import urlsplit

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from cmvoice.errors import NOTHING, FieldError, InvalidInstruction
from cmvoice.privacy import hidden_value, mask_number, quote_value
from cmvoice.validation_errors import (
    cross_field_error,
    describe_validation_error,
    dotted_location,
)

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

#: Longest instruction id CM accepts.
MAX_INSTRUCTION_ID_CHARS = 64
#: Longest callback URL CM accepts.
MAX_CALLBACK_URL_CHARS = 256
#: Keys a callee can press.
DTMF_KEYS = frozenset("0123456789*#")

_INSTRUCTION_ID = re.compile(r"[A-Za-z0-9._~-]+")
_CODE = re.compile(r"[A-Za-z0-9]+")
_LOCALE = re.compile(r"[a-z]{2}-[A-Z]{2}")


class _CaseInsensitiveEnum(StrEnum):
    """Accepts ``tts`` for ``TTS``: spreadsheets and shells are careless with case."""

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if isinstance(value, str):
            for member in cls:
                if member.value.lower() == value.lower():
                    return member
        return None


class PromptType(_CaseInsensitiveEnum):
    """How CM renders a prompt: text to speech, SSML, or an audio file in the account's folder."""

    TTS = "TTS"
    TTS_SSML = "TTS_SSML"
    File = "File"


class CodeType(_CaseInsensitiveEnum):
    """Which audio reads an OTP code: CM's default prompts, the account's own, or a TTS voice."""

    Default = "Default"
    Custom = "Custom"
    TTS = "TTS"


class Gender(_CaseInsensitiveEnum):
    """Gender of a TTS voice."""

    Male = "Male"
    Female = "Female"


class VoicemailResponse(_CaseInsensitiveEnum):
    """What CM does when it detects voicemail."""

    Ignore = "Ignore"
    Restart = "Restart"
    Stop = "Stop"


def to_cm_name(name: str) -> str:
    """``max_replays`` -> ``max-replays``: CM's JSON names are the Python names, hyphenated."""
    return name.replace("_", "-")


def normalize_number(value: str) -> str:
    """Check an international phone number and return it as E.164 (``+31612345678``).

    ``0031612345678`` is accepted and rewritten; a national number (``0612345678``) is refused
    with a hint. The number itself never appears in the message: it is personal data.
    """
    text = re.sub(r"[\s().-]", "", value)
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+"):
        # The example is spaced on purpose: it can never be mistaken for the caller's input.
        raise ValueError(
            "must be an international number starting with + or 00 and the country code "
            "(e.g. +31 6 1234 5678 or 0031 6 1234 5678, not the national form 06 1234 5678)"
        )
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"is not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("is not a valid number for its country code")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _check_instruction_id(value: str) -> str:
    if not _INSTRUCTION_ID.fullmatch(value):
        raise ValueError("may hold only letters, digits and . _ ~ - (it becomes part of a URL)")
    return value


def _check_callback_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


def _check_code(value: str) -> str:
    if not _CODE.fullmatch(value):
        raise ValueError("must hold only letters and digits (CM reads it character by character)")
    return value


def _check_terminators(value: str) -> str:
    wrong = sorted(set(value) - DTMF_KEYS)
    if wrong:
        raise ValueError("may hold only DTMF keys 0-9, * and #")
    return value


def _check_regex(value: str) -> str:
    try:
        # CM, not Python, runs the regex: Python's FutureWarnings about its own future
        # semantics ("Possible nested set" for "[[") are no reason to refuse it, nor to warn.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            re.compile(value)
    except (re.error, OverflowError) as exc:
        # OverflowError: a repetition count too large for re (``a{99999999999}``); pydantic
        # turns only ValueError into a validation error, so it must be translated here.
        raise ValueError(f"is not a valid regular expression ({exc})") from None
    return value


def _check_locale(value: str) -> str:
    if not _LOCALE.fullmatch(value):
        raise ValueError("must be a 5-character locale such as en-GB or nl-NL")
    return value


PhoneNumber: TypeAlias = Annotated[str, Field(max_length=24), AfterValidator(normalize_number)]
InstructionId: TypeAlias = Annotated[
    str,
    Field(min_length=1, max_length=MAX_INSTRUCTION_ID_CHARS),
    AfterValidator(_check_instruction_id),
]
CallbackUrl: TypeAlias = Annotated[
    str, Field(max_length=MAX_CALLBACK_URL_CHARS), AfterValidator(_check_callback_url)
]
RingingTimeout: TypeAlias = Annotated[int, Field(ge=10, le=60)]
Replays: TypeAlias = Annotated[int, Field(ge=0, le=3)]


class _WireModel(BaseModel):
    """What we send to CM: strict, hyphenated on the wire, snake_case in Python."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_cm_name,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        # Inputs may be OTP codes or phone numbers: keep them out of pydantic's messages;
        # InvalidInstruction quotes values itself, masked.
        hide_input_in_errors=True,
        use_enum_values=False,
        strict=False,
    )


class Voice(_WireModel):
    """The TTS voice: a locale, a gender and a voice number, with optional volume and premium."""

    language: Annotated[str, AfterValidator(_check_locale)]
    gender: Gender
    number: Annotated[int, Field(ge=1)]
    volume: Annotated[int, Field(ge=-4, le=4)] | None = None
    premium: bool | None = None


class _Instruction(_WireModel):
    """Fields every app shares."""

    #: CM's path for this app, under the API URL.
    app: ClassVar[str]
    #: The short name used by the CLI, the ledger and campaigns.
    kind: ClassVar[str]

    instruction_id: InstructionId | None = None
    callee: PhoneNumber = Field(repr=False)
    caller: PhoneNumber = Field(repr=False)
    anonymous: bool | None = None
    voice: Voice | None = None
    callback_url: CallbackUrl | None = None
    max_ringing_timeout: RingingTimeout | None = None

    def to_payload(self) -> dict[str, Any]:
        """The exact JSON body CM receives: the fields that were set, hyphenated."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)


class NotificationInstruction(_Instruction):
    """Call the callee, play a prompt, hang up."""

    app: ClassVar[str] = "Notification"
    kind: ClassVar[str] = "notification"

    prompt: Annotated[str, Field(min_length=1, max_length=750)]
    prompt_type: PromptType | None = None
    replay_prompt: Annotated[str, Field(min_length=1, max_length=750)] | None = None
    replay_prompt_type: PromptType | None = None
    max_replays: Replays | None = None
    auto_replay: bool | None = None
    voicemail_response: VoicemailResponse | None = None

    @model_validator(mode="after")
    def _replay_prompt_when_replays_wait_for_a_key(self) -> Self:
        # With replays and no auto-replay, CM plays replay-prompt and waits for "1":
        # without a replay prompt the callee is never told to press it.
        if self.max_replays and not self.auto_replay and self.replay_prompt is None:
            raise cross_field_error(
                "replay-prompt",
                f"required when max-replays > 0 ({self.max_replays}) and auto-replay is not true",
                NOTHING,
            )
        return self


class OtpInstruction(_Instruction):
    """Call the callee and read a one-time code character by character, with replays."""

    app: ClassVar[str] = "OTP"
    kind: ClassVar[str] = "otp"

    intro_prompt: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    intro_prompt_type: PromptType | None = None
    code_prompt: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    code_prompt_type: PromptType | None = None
    code: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_check_code)] = Field(
        repr=False
    )
    code_type: CodeType | None = None
    replay_prompt: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    replay_prompt_type: PromptType | None = None
    outro_prompt: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    outro_prompt_type: PromptType | None = None
    max_replays: Replays | None = None
    auto_replay: bool | None = None
    voicemail_response: VoicemailResponse | None = None


class DtmfInstruction(_Instruction):
    """Call the callee, ask for digits, check them against the rules, up to max-attempts times."""

    app: ClassVar[str] = "DTMF"
    kind: ClassVar[str] = "dtmf"

    prompt: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    prompt_type: PromptType | None = None
    valid_prompt: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    valid_prompt_type: PromptType | None = None
    invalid_prompt: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    invalid_prompt_type: PromptType | None = None
    min_digits: Annotated[int, Field(ge=1, le=99)]
    max_digits: Annotated[int, Field(ge=1, le=99)]
    max_attempts: Annotated[int, Field(ge=1, le=99)]
    timeout: Annotated[int, Field(ge=1000, le=10000)] | None = None
    terminators: Annotated[str, Field(max_length=8), AfterValidator(_check_terminators)] | None = (
        None
    )
    regex: Annotated[str, Field(max_length=64), AfterValidator(_check_regex)] | None = None

    @model_validator(mode="after")
    def _min_digits_not_above_max(self) -> Self:
        if self.min_digits > self.max_digits:
            raise cross_field_error(
                "min-digits", f"must be <= max-digits ({self.max_digits})", str(self.min_digits)
            )
        return self


Instruction: TypeAlias = NotificationInstruction | OtpInstruction | DtmfInstruction
Kind: TypeAlias = Literal["notification", "otp", "dtmf"]

#: The model of each kind, by the short name the CLI and the ledger use.
MODELS: dict[str, type[Instruction]] = {
    model.kind: model for model in (NotificationInstruction, OtpInstruction, DtmfInstruction)
}


def _mask_number_value(value: object) -> str:
    # A number given as a JSON number (31612345678) is as personal as the string.
    return mask_number(value) if isinstance(value, str) else hidden_value(value)


#: Fields whose values are personal data or secrets, and how errors render them.
_MASKED_FIELDS = {"callee": _mask_number_value, "caller": _mask_number_value, "code": hidden_value}


def _instruction_field(error: ErrorDetails) -> str:
    location = dotted_location(error)
    if error["type"] == "extra_forbidden":
        # Name an unknown field as it was spelled: it has no CM name.
        return location
    return to_cm_name(location) or "(instruction)"


def _instruction_value(error: ErrorDetails) -> str:
    value: object = error.get("input")
    location = error["loc"]
    top = str(location[0]) if location else ""
    if error["type"] == "extra_forbidden":
        # An unknown field's value may be anything, personal data included (a list of
        # callees), so only its size is shown.
        return hidden_value(value)
    if top in _MASKED_FIELDS:
        return _MASKED_FIELDS[top](value)
    if not location:
        # The instruction as a whole is not an object: never quote it, it holds numbers.
        return (
            "the whole instruction" if isinstance(value, Mapping) else f"a {type(value).__name__}"
        )
    return quote_value(value)


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Turn pydantic's errors into (field, rule, value) triples, masking personal data."""
    return describe_validation_error(
        exc, name_field=_instruction_field, show_value=_instruction_value
    )


def parse_instruction(kind: str, data: Mapping[str, Any]) -> Instruction:
    """Validate ``data`` as a ``kind`` instruction; InvalidInstruction names each error."""
    try:
        model = MODELS[kind]
    except KeyError:
        raise InvalidInstruction(
            kind, [FieldError("kind", f"must be one of {', '.join(MODELS)}", quote_value(kind))]
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Safe to chain: the models hide inputs from pydantic's own message.
        raise InvalidInstruction(kind, field_errors(exc)) from exc


def infer_kind(data: Mapping[str, Any]) -> str:
    """Guess the app from the fields present: ``code`` means OTP, digit limits mean DTMF."""
    names = {to_cm_name(str(key)) for key in data}
    if "code" in names:
        return "otp"
    if names & {"min-digits", "max-digits", "max-attempts"}:
        return "dtmf"
    return "notification"
