"""Settings: the only place that reads the environment (prefix ``CMVOICE_``, and ``.env``)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeAlias, get_args

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from cmvoice.errors import ConfigurationError, FieldError
from cmvoice.keyspace import DEFAULT_KEY_PREFIX
from cmvoice.messages import DEFAULT_RESULT_QUEUE
from cmvoice.privacy import quote_value
from cmvoice.rules.countries import parse_countries
from cmvoice.rules.windows import (
    DEFAULT_DAYS,
    DEFAULT_WINDOW,
    CallingPolicy,
    format_days,
    parse_days,
    parse_window,
)
from cmvoice.validation_errors import describe_validation_error

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

#: CM's production endpoint.
DEFAULT_API_URL = "https://api.cm.com/voiceapi/v2"
#: Port of the embedded Redis that ``cmvoice dev`` and ``cmvoice worker`` start when no
#: broker is configured; every cmvoice process on the machine finds it there.
DEFAULT_EMBEDDED_REDIS_PORT = 16379
#: Where the receiver listens by default, and so where the callback URLs point.
DEFAULT_RECEIVER_PORT = 8090
#: Shortest API key accepted: a key is a password a web app sends with every request.
MIN_API_KEY_CHARS = 16

_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*(\d*)\s*(s|m|h))?\s*")


def parse_duration(value: object) -> float:
    """``30``, ``0.5``, ``30s``, ``5m``, ``1h``, ``250ms`` -> seconds."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.fullmatch(str(value))
    if not match:
        raise ValueError("must be seconds (30, 0.5) or a number with a unit (250ms, 30s, 5m, 1h)")
    return float(match.group(1)) * _UNITS[match.group(2) or ""]


@dataclass(frozen=True)
class Rate:
    """A number of calls per period; ``interval_s`` is the gap between two calls."""

    count: float
    period_s: float

    @property
    def interval_s(self) -> float:
        return self.period_s / self.count

    @property
    def per_second(self) -> float:
        return self.count / self.period_s

    def __str__(self) -> str:
        """``10/s``, ``600/m``, ``5/h``, ``3/10m``: per one unit when the period is one."""
        for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
            if self.period_s >= size and self.period_s % size == 0:
                units = self.period_s / size
                per = unit if units == 1 else f"{_plain(units)}{unit}"
                return f"{_plain(self.count)}/{per}"
        return f"{_plain(self.per_second)}/s"


def _plain(number: float) -> str:
    """``number`` as ``parse_rate`` reads it back: all its digits, never an exponent
    (``:g`` writes 1000000 as ``1e+06``, and a campaign keeps its rate as this text)."""
    value = float(number)  # Rate(10, 1) is written with ints too
    return str(int(value)) if value.is_integer() else format(Decimal(repr(value)), "f")


def parse_rate(value: object) -> Rate:
    """``10/s``, ``600/m``, ``5/10s``, or a bare ``10`` (per second) -> Rate."""
    if isinstance(value, Rate):
        return value
    match = _RATE.fullmatch(str(value))
    if match:
        count = float(match.group(1))
        multiplier = float(match.group(2)) if match.group(2) else 1.0
        period = multiplier * _UNITS[match.group(3) or "s"]
        # A period of 0 ("5/0s") is no rate: its interval of 0 would switch the limit off.
        if count > 0 and period > 0:
            return Rate(count=count, period_s=period)
    raise ValueError("must be a positive rate such as 10/s, 600/m or 5/10s")


def _optional_rate(value: object) -> object:
    """A rate, or none: ``off``, ``none`` or an empty value switch a limit off."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off", "none")):
        return None
    return parse_rate(value)


def _split_secret(value: str) -> list[str]:
    """The comma-separated items of a secret setting, trimmed (a list of keys)."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


Duration: TypeAlias = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
CommaList: TypeAlias = Annotated[list[str], NoDecode, BeforeValidator(_split_list)]
CodeList: TypeAlias = Annotated[list[int], NoDecode, BeforeValidator(_split_list)]


class Settings(BaseSettings):
    """Every ``CMVOICE_`` variable, with its default. See the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="CMVOICE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        hide_input_in_errors=True,
    )

    # CM
    product_token: SecretStr | None = None
    api_url: str = DEFAULT_API_URL
    http_timeout: Duration = 10.0
    connect_timeout: Duration = 3.05
    # Broker and ledger
    broker_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".cmvoice")
    embedded_redis_port: int = Field(default=DEFAULT_EMBEDDED_REDIS_PORT, ge=1, le=65535)
    retention: Duration = 7 * 86400.0
    key_prefix: str = Field(default=DEFAULT_KEY_PREFIX, pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    encryption_key: SecretStr | None = None
    # Limits
    rate_limit: Annotated[Rate, NoDecode, BeforeValidator(parse_rate)] = Rate(10, 1)
    max_concurrent_calls: int = Field(default=50, ge=1)
    interactive_slots: int = Field(default=5, ge=0)
    max_rate_wait: Duration = 5.0
    pacer_lead: Duration = Field(default=0.5, gt=0, le=5)
    pacer: bool = True
    # Monitoring
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Dispatch and retries
    dispatch_lease: Duration = 60.0
    slot_lease: Duration = 900.0
    max_dispatch_retries: int = Field(default=8, ge=0)
    retry_backoff_base: Duration = 1.0
    retry_backoff_max: Duration = 60.0
    unknown_timeout: Duration = 900.0
    callback_timeout: Duration = 3600.0
    unknown_policy: Literal["fail", "redial"] = "fail"
    reconcile_interval: Duration = 10.0
    requeue_grace: Duration = 30.0
    # Callbacks and results
    callback_base_url: str = f"http://127.0.0.1:{DEFAULT_RECEIVER_PORT}"
    callback_secret: SecretStr | None = None
    redial_codes: CodeList = Field(default_factory=lambda: [9, 12])
    redial_delay: Duration = 300.0
    redial_max_attempts: int = Field(default=3, ge=1)
    result_tasks: CommaList = Field(default_factory=list)
    result_queue: str = DEFAULT_RESULT_QUEUE
    outbox_timeout: Duration = 300.0
    # Calling rules
    calling_window: str = DEFAULT_WINDOW
    calling_days: str = DEFAULT_DAYS
    number_cooldown: Duration = 0.0
    allowed_countries: CommaList = Field(default_factory=list)
    per_number_limit: Annotated[Rate | None, NoDecode, BeforeValidator(_optional_rate)] = Rate(
        5, 3600
    )
    # Flower
    flower_user: str = "admin"
    flower_password: SecretStr | None = None
    # HTTP API
    api_keys: SecretStr | None = None

    @field_validator("product_token")
    @classmethod
    def _token_is_a_guid(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not PRODUCT_TOKEN_SHAPE.fullmatch(value.get_secret_value()):
            raise ValueError("must be a GUID such as 00000000-0000-0000-0000-000000000000")
        return value

    @field_validator("api_url", "callback_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("calling_window")
    @classmethod
    def _window(cls, value: str) -> str:
        return str(parse_window(value))

    @field_validator("calling_days")
    @classmethod
    def _days(cls, value: str) -> str:
        return format_days(parse_days(value))

    @field_validator("allowed_countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        return sorted(parse_countries(",".join(value)))

    @property
    def calling_policy(self) -> CallingPolicy:
        """The calling window and days of every campaign call that sets none of its own."""
        return CallingPolicy.parse(self.calling_window, self.calling_days)

    @field_validator("api_keys")
    @classmethod
    def _api_keys_are_long(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and any(
            len(key) < MIN_API_KEY_CHARS for key in _split_secret(value.get_secret_value())
        ):
            raise ValueError(
                f"each key must be at least {MIN_API_KEY_CHARS} characters (make one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @property
    def accepted_api_keys(self) -> list[str]:
        """The keys ``cmvoice api`` accepts (comma-separated in CMVOICE_API_KEYS), so a new key
        can be added before the old one is removed."""
        return [] if self.api_keys is None else _split_secret(self.api_keys.get_secret_value())

    @property
    def encryption_keys(self) -> list[str]:
        """The Fernet keys, newest first (comma-separated in CMVOICE_ENCRYPTION_KEY)."""
        if self.encryption_key is None:
            return []
        return _split_secret(self.encryption_key.get_secret_value())

    @property
    def campaign_slot_limit(self) -> int:
        """The concurrency slots campaign calls may hold at once: all but the ones kept free
        for interactive calls (``CMVOICE_INTERACTIVE_SLOTS``), so that an OTP call never waits
        for a campaign call to end; campaigns always keep at least one."""
        reserved = min(self.interactive_slots, self.max_concurrent_calls - 1)
        return self.max_concurrent_calls - reserved

    @property
    def broker_is_ledger_redis(self) -> bool:
        """Whether the broker is the ledger's Redis: then messages can go out atomically with
        the ledger transition that causes them (an outbox in the same Lua step)."""
        broker = self.effective_broker_url
        return broker.startswith(("redis://", "rediss://", "unix://")) and (
            broker == self.effective_redis_url
        )

    @property
    def effective_broker_url(self) -> str:
        """The configured broker, or the embedded Redis every cmvoice process shares."""
        return self.broker_url or f"redis://127.0.0.1:{self.embedded_redis_port}/0"

    @property
    def uses_embedded_redis(self) -> bool:
        return self.broker_url is None

    @property
    def effective_redis_url(self) -> str:
        """Redis for the ledger and limiters: configured, or the broker when that is Redis."""
        if self.redis_url:
            return self.redis_url
        broker = self.effective_broker_url
        if broker.startswith(("redis://", "rediss://", "unix://")):
            return broker
        raise ConfigurationError(
            "CMVOICE_REDIS_URL: required when CMVOICE_BROKER_URL is not a Redis URL "
            "(the ledger and the rate limiter live in Redis)"
        )


#: The shape of a CM product token (a GUID), checked here and by VoiceApiClient.
PRODUCT_TOKEN_SHAPE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def _setting_variable(error: ErrorDetails) -> str:
    return f"CMVOICE_{str(error['loc'][0]).upper()}" if error["loc"] else "CMVOICE_?"


def _setting_value(error: ErrorDetails) -> str:
    """The value as it was set, so the reader sees their typo; secrets are never echoed."""
    field = Settings.model_fields.get(str(error["loc"][0])) if error["loc"] else None
    if field is not None and SecretStr in (field.annotation, *get_args(field.annotation)):
        return "<hidden>"
    return quote_value(error.get("input"))


def settings_errors(exc: ValidationError) -> list[FieldError]:
    """Each invalid setting: its variable, the rule, and the value (``<hidden>`` if secret)."""
    return describe_validation_error(exc, name_field=_setting_variable, show_value=_setting_value)


def load_settings() -> Settings:
    """Read the settings, turning any invalid value into a message naming its variable."""
    try:
        return Settings()
    except SettingsError as exc:
        # pydantic-settings could not even decode a value: name the variable it came from.
        match = re.search(r'field "(\w+)"', str(exc))
        name = f"CMVOICE_{match.group(1).upper()}" if match else "a CMVOICE_ variable"
        raise ConfigurationError(f"invalid configuration:\n  {name}: cannot be parsed") from None
    except ValidationError as exc:
        problems = "\n  ".join(str(error) for error in settings_errors(exc))
        raise ConfigurationError(f"invalid configuration:\n  {problems}") from None


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once. Tests call ``get_settings.cache_clear()``."""
    return load_settings()
