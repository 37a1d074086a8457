"""Runtime: the live parts a worker, receiver or producer works with, built once from Settings."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from functools import cached_property

import redis

from cmvoice.client import VoiceApiClient
from cmvoice.config import DEFAULT_API_URL, Settings, get_settings
from cmvoice.errors import ConfigurationError
from cmvoice.ledger import CallLedger, as_text
from cmvoice.ratelimit import ConcurrencyLimiter, GcraLimiter, account_key
from cmvoice.retrying import RetryPolicy
from cmvoice.schedule import DispatchSchedule

#: The token ``cmvoice simulator`` accepts unless told otherwise; never valid at CM.
SIMULATOR_TOKEN = "00000000-0000-0000-0000-000000000000"  # noqa: S105 - public dev token
#: Seconds a worker trusts its last look at the bad-token breaker.
BREAKER_CACHE_S = 1.0
#: Where a generated callback secret is kept, so every process on the same Redis agrees on it.
GENERATED_SECRET_KEY = "cmvoice:callback_secret"  # noqa: S105 - a key name


@dataclass
class Runtime:
    """Settings plus the objects built from them, shared by the tasks of one process."""

    settings: Settings
    redis: redis.Redis
    _breaker_open: bool = False
    _breaker_checked_at: float = -1e9

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        client = redis.Redis.from_url(
            settings.effective_redis_url,
            socket_connect_timeout=5,
            socket_timeout=10,
            health_check_interval=30,
            retry_on_timeout=True,
        )
        return cls(settings=settings, redis=client)

    @cached_property
    def product_token(self) -> str:
        token = self.settings.product_token
        if token is not None:
            return token.get_secret_value()
        if self.settings.api_url == DEFAULT_API_URL:
            raise ConfigurationError(
                "CMVOICE_PRODUCT_TOKEN: required to call CM (or point CMVOICE_API_URL at "
                "`cmvoice simulator`, or run `cmvoice dev`)"
            )
        return SIMULATOR_TOKEN

    @cached_property
    def account(self) -> str:
        return account_key(self.product_token)

    @cached_property
    def ledger(self) -> CallLedger:
        return CallLedger(self.redis, retention_s=self.settings.retention)

    @cached_property
    def rate_limiter(self) -> GcraLimiter:
        return GcraLimiter(self.redis, f"cmvoice:rate:{self.account}", self.settings.rate_limit)

    @cached_property
    def slots(self) -> ConcurrencyLimiter:
        return ConcurrencyLimiter(
            self.redis,
            f"cmvoice:inflight:{self.account}",
            self.settings.max_concurrent_calls,
            self.settings.slot_lease,
        )

    @cached_property
    def schedule(self) -> DispatchSchedule:
        return DispatchSchedule(self.redis)

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.settings.max_dispatch_retries,
            backoff_base_s=self.settings.retry_backoff_base,
            backoff_max_s=self.settings.retry_backoff_max,
        )

    @cached_property
    def voice_client(self) -> VoiceApiClient:
        return VoiceApiClient(
            self.product_token,
            api_url=self.settings.api_url,
            timeout=(self.settings.connect_timeout, self.settings.http_timeout),
        )

    @cached_property
    def callback_secret(self) -> str:
        """The configured secret, or one generated once and kept in Redis for every process."""
        if self.settings.callback_secret is not None:
            return self.settings.callback_secret.get_secret_value()
        self.redis.set(GENERATED_SECRET_KEY, secrets.token_hex(32), nx=True)
        value = self.redis.get(GENERATED_SECRET_KEY)
        if value is None:  # pragma: no cover - set just above
            raise ConfigurationError("CMVOICE_CALLBACK_SECRET: could not be generated")
        return as_text(value)

    def token_rejected(self) -> bool:
        """Whether CM refused this account's token lately (any worker may have seen it).

        Read from Redis at most once a second: it is asked before every POST.
        """
        now = time.monotonic()
        if now - self._breaker_checked_at > BREAKER_CACHE_S:
            self._breaker_open = bool(self.redis.exists(self._breaker_key))
            self._breaker_checked_at = now
        return self._breaker_open

    def reject_token(self, hold_s: float) -> None:
        """Record that CM refused the token: no call of the account is sent for ``hold_s``."""
        self.redis.set(self._breaker_key, "1", ex=max(1, int(hold_s)))
        self._breaker_open = True
        self._breaker_checked_at = time.monotonic()

    @property
    def _breaker_key(self) -> str:
        return f"cmvoice:auth_failed:{self.account}"

    def close(self) -> None:
        if "voice_client" in self.__dict__:
            self.voice_client.close()
        self.redis.close()


_current: Runtime | None = None
_current_lock = threading.Lock()


def get_runtime() -> Runtime:
    """This process's Runtime, built from the settings on first use."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Runtime.from_settings(get_settings())
        return _current


def set_runtime(runtime: Runtime | None) -> None:
    """Replace this process's Runtime (tests, or a CLI that built its own settings)."""
    global _current
    with _current_lock:
        old, _current = _current, runtime
    if old is not None and old is not runtime:
        old.close()
