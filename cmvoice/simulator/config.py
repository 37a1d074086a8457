"""SimulatorConfig: tokens, time scale, paths, callback delivery and faults of a simulator."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cmvoice.simulator import callbacks
from cmvoice.simulator.faults import Faults

#: The product token accepted when none is configured: CM's documentation uses it in examples.
#: Public on purpose; it only opens a local simulator.
DEV_PRODUCT_TOKEN = "00000000-0000-0000-0000-000000000000"  # noqa: S105 (public)
#: CM's path prefix; the apps are ``{prefix}/Notification``, ``/OTP`` and ``/DTMF``.
DEFAULT_PREFIX = "/voiceapi/v2"
#: Port of ``cmvoice simulator`` (the receiver has 8090).
DEFAULT_PORT = 8091
#: Largest instruction body accepted; CM's longest instruction is a few kilobytes.
DEFAULT_MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class SimulatorConfig:
    """How a simulator behaves. Every field has a default that suits a developer's laptop.

    Attributes:
        tokens: accepted product tokens (compared case-insensitively); empty means the dev token.
        time_scale: factor on every simulated duration (0.001: a 60 s ring takes 60 ms).
        prefix: path prefix of the apps.
        default_callback_url: where callbacks go when an instruction has no callback-url.
        faults: the faults injected from the start (``POST /_sim/faults`` changes them).
        callback_retry_for_s: real seconds a failing callback is retried before giving up.
        callback_first_backoff_s: real seconds before the first retry (doubled per retry).
        callback_timeout_s: real seconds one callback POST may take.
        callback_workers: callback POSTs in flight at once.
        max_body_bytes: larger instruction bodies are answered 413.
        seed: makes fault draws and retry jitter reproducible.
    """

    tokens: tuple[str, ...] = field(default=(DEV_PRODUCT_TOKEN,), repr=False)
    time_scale: float = 1.0
    prefix: str = DEFAULT_PREFIX
    default_callback_url: str | None = None
    faults: Faults = field(default_factory=Faults)
    callback_retry_for_s: float = callbacks.DEFAULT_RETRY_FOR_S
    callback_first_backoff_s: float = callbacks.DEFAULT_FIRST_BACKOFF_S
    callback_timeout_s: float = callbacks.DEFAULT_POST_TIMEOUT_S
    callback_workers: int = callbacks.DEFAULT_WORKERS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    seed: int | None = None

    def __post_init__(self) -> None:
        tokens = _clean_tokens(self.tokens)
        # Frozen dataclass: normalized values are set through object.__setattr__.
        object.__setattr__(self, "tokens", tokens or (DEV_PRODUCT_TOKEN,))
        stripped = self.prefix.strip("/")
        object.__setattr__(self, "prefix", f"/{stripped}" if stripped else "")
        if self.time_scale < 0:
            raise ValueError("time_scale: must be 0 or more")
        for name in ("callback_retry_for_s", "callback_first_backoff_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be 0 or more")
        if self.callback_timeout_s <= 0:
            raise ValueError("callback_timeout_s: must be more than 0")
        if self.callback_workers < 1:
            raise ValueError("callback_workers: must be 1 or more")
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes: must be 1 or more")
        if self.default_callback_url is not None and not self.default_callback_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError("default_callback_url: must be an http:// or https:// URL")


def _clean_tokens(tokens: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(tokens, str):
        tokens = [tokens]
    return tuple(token.strip().lower() for token in tokens if token.strip())
