"""Runtime: the live parts a worker, receiver or producer works with, built once from Settings."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import redis

from cmvoice.calls import DispatchLimits
from cmvoice.config import DEFAULT_API_URL, Settings, get_settings
from cmvoice.crypto import FieldCipher
from cmvoice.errors import ConfigurationError
from cmvoice.keyspace import Keys
from cmvoice.ledger import CallLedger
from cmvoice.ratelimit import ConcurrencyLimiter, account_key
from cmvoice.replies import as_text
from cmvoice.retrying import RetryPolicy
from cmvoice.schedule import DispatchSchedule

if TYPE_CHECKING:
    from cmvoice.client import VoiceApiClient

#: The token ``cmvoice simulator`` accepts unless told otherwise; never valid at CM.
SIMULATOR_TOKEN = "00000000-0000-0000-0000-000000000000"  # noqa: S105 - public dev token


@dataclass
class Runtime:
    """Settings plus the objects built from them, shared by the tasks of one process."""

    settings: Settings
    redis: redis.Redis

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
    def keys(self) -> Keys:
        return Keys(self.settings.key_prefix)

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
    def cipher(self) -> FieldCipher:
        return FieldCipher(self.settings.encryption_keys)

    @cached_property
    def ledger(self) -> CallLedger:
        return CallLedger(
            self.redis, keys=self.keys, retention_s=self.settings.retention, cipher=self.cipher
        )

    @cached_property
    def limits(self) -> DispatchLimits:
        """The account's limits every dispatch takes its share of (rate, slots), and the
        calling rules it checks for campaign calls (per-number limit, cooldown)."""
        settings = self.settings
        limit = settings.per_number_limit
        return DispatchLimits(
            account_key=self.keys.account(self.account),
            slots_key=self.keys.slots(self.account),
            interval_s=settings.rate_limit.interval_s,
            slot_limit=settings.max_concurrent_calls,
            slot_lease_s=settings.slot_lease,
            campaign_slot_limit=settings.campaign_slot_limit,
            max_wait_interactive_s=settings.max_rate_wait,
            # The pacer releases campaign calls at most its lead ahead of their rate turn; a
            # longer wait means interactive calls took the turns, and the call waits in Redis.
            max_wait_campaign_s=2 * settings.pacer_lead,
            number_limit=int(limit.count) if limit else 0,
            number_window_s=limit.period_s if limit else 0.0,
            number_cooldown_s=settings.number_cooldown,
        )

    @cached_property
    def slots(self) -> ConcurrencyLimiter:
        return ConcurrencyLimiter(self.redis, self.keys.slots(self.account), self.keys.prefix)

    @cached_property
    def schedule(self) -> DispatchSchedule:
        return DispatchSchedule(self.redis, self.keys.schedule())

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.settings.max_dispatch_retries,
            backoff_base_s=self.settings.retry_backoff_base,
            backoff_max_s=self.settings.retry_backoff_max,
        )

    @cached_property
    def voice_client(self) -> VoiceApiClient:
        # Imported here: producers (a web app, `cmvoice send`) never call CM, and need not pay
        # for requests.
        from cmvoice.client import VoiceApiClient

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
        key = self.keys.callback_secret()
        self.redis.set(key, secrets.token_hex(32), nx=True)
        value = self.redis.get(key)
        if value is None:  # pragma: no cover - set just above
            raise ConfigurationError("CMVOICE_CALLBACK_SECRET: could not be generated")
        return as_text(value)

    def reject_token(self, hold_s: float) -> None:
        """Record that CM refused the token: no call of the account is sent for ``hold_s``.

        Every dispatch checks it atomically in its claim (lua/begin.lua).
        """
        until_ms = self.ledger.server_time_ms() + int(hold_s * 1000)
        self.redis.hset(self.keys.account(self.account), "refused_until", until_ms)

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
