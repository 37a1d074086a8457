"""Fault injection: how often the simulator answers like a CM in trouble, drawn reproducibly."""

from __future__ import annotations

import random
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Seconds a throttled client is asked to wait, in the ``Retry-After`` header.
DEFAULT_RETRY_AFTER_S = 1
#: Seconds a "read timeout" request is held before the simulator answers.
DEFAULT_HOLD_S = 30.0
#: Chance that a request answered with a read timeout (or a 500, if asked) still placed a call.
DEFAULT_TIMEOUT_PLACES_CALL = 0.5

Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class Faults(BaseModel):
    """The faults to inject; every rate is a probability in 0..1, drawn per request or callback.

    One draw per instruction POST picks at most one of 429, 500, 503 and read timeout, so
    their rates must add up to 1 or less; likewise one draw per callback picks dropped,
    duplicated or normal.
    """

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=lambda name: name.replace("_", "-"),
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
    )

    #: Share of POSTs answered 429 with ``Retry-After: retry_after_s``; no call placed.
    fail_429: Rate = 0.0
    retry_after_s: Annotated[int, Field(ge=0)] = DEFAULT_RETRY_AFTER_S
    #: Share of POSTs answered 500. With ``places_call_on_500`` the call may be placed anyway
    #: (probability ``timeout_places_call``), as CM's 500 is ambiguous.
    fail_500: Rate = 0.0
    places_call_on_500: bool = False
    #: Share of POSTs answered 503 (CM not serving); no call placed.
    fail_503: Rate = 0.0
    #: Share of POSTs held ``hold_s`` seconds (past the client's read timeout). With probability
    #: ``timeout_places_call`` the call is placed and the late answer is 200 call-queued;
    #: otherwise nothing is placed and the late answer is 504.
    timeout_rate: Rate = 0.0
    hold_s: Annotated[float, Field(ge=0.0)] = DEFAULT_HOLD_S
    timeout_places_call: Rate = DEFAULT_TIMEOUT_PLACES_CALL
    #: Milliseconds added before answering every instruction POST.
    latency_ms: Annotated[float, Field(ge=0.0)] = 0.0
    #: Share of callbacks never sent, and of callbacks sent twice.
    drop_callbacks: Rate = 0.0
    duplicate_callbacks: Rate = 0.0
    #: Reseeds the fault draws when these faults are set, for reproducible runs.
    seed: int | None = None

    @model_validator(mode="after")
    def _rates_fit_in_one_draw(self) -> Self:
        request_rates = self.fail_429 + self.fail_500 + self.fail_503 + self.timeout_rate
        if request_rates > 1.0 + 1e-9:
            raise ValueError(
                "fail-429 + fail-500 + fail-503 + timeout-rate: must add up to 1 or less "
                f"(got {request_rates:g})"
            )
        if self.drop_callbacks + self.duplicate_callbacks > 1.0 + 1e-9:
            raise ValueError("drop-callbacks + duplicate-callbacks: must add up to 1 or less")
        return self


class RequestFault(StrEnum):
    """What happens to one instruction POST."""

    NONE = "none"
    THROTTLED = "429"
    SERVER_ERROR = "500"
    UNAVAILABLE = "503"
    READ_TIMEOUT = "timeout"


class FaultInjector:
    """Draws faults from the configured rates, with one random stream per kind of decision.

    Separate streams keep the request faults reproducible: each POST takes exactly one number
    from its stream, whatever callbacks or placements happen in between.
    """

    def __init__(self, faults: Faults | None = None, seed: int | None = None) -> None:
        self._faults = faults or Faults()
        self.reseed(self._faults.seed if self._faults.seed is not None else seed)

    @property
    def faults(self) -> Faults:
        return self._faults

    def set(self, faults: Faults) -> None:
        """Replace the faults; their ``seed``, when given, restarts the random streams."""
        self._faults = faults
        if faults.seed is not None:
            self.reseed(faults.seed)

    def reseed(self, seed: int | None) -> None:
        # String seeds are hashed with SHA-512 by random.seed: stable across processes.
        self._requests = random.Random(None if seed is None else f"{seed}:requests")
        self._placements = random.Random(None if seed is None else f"{seed}:placements")
        self._callbacks = random.Random(None if seed is None else f"{seed}:callbacks")
        self._jitter = random.Random(None if seed is None else f"{seed}:jitter")

    @property
    def latency_s(self) -> float:
        return self._faults.latency_ms / 1000.0

    def request_fault(self) -> RequestFault:
        """The fault for the next POST (exactly one draw)."""
        draw = self._requests.random()
        faults = self._faults
        for fault, rate in (
            (RequestFault.THROTTLED, faults.fail_429),
            (RequestFault.SERVER_ERROR, faults.fail_500),
            (RequestFault.UNAVAILABLE, faults.fail_503),
            (RequestFault.READ_TIMEOUT, faults.timeout_rate),
        ):
            if draw < rate:
                return fault
            draw -= rate
        return RequestFault.NONE

    def places_call(self, fault: RequestFault) -> bool:
        """Whether an ambiguous failure (500 or read timeout) still placed the call."""
        if fault is RequestFault.SERVER_ERROR and not self._faults.places_call_on_500:
            return False
        return self._placements.random() < self._faults.timeout_places_call

    def callback_copies(self) -> int:
        """How many times the next callback is sent: 0 (dropped), 1, or 2 (duplicated)."""
        draw = self._callbacks.random()
        if draw < self._faults.drop_callbacks:
            return 0
        if draw < self._faults.drop_callbacks + self._faults.duplicate_callbacks:
            return 2
        return 1

    def jitter(self) -> float:
        """A factor in [0.5, 1) for callback retry delays, so retries do not march in step."""
        return 0.5 + self._jitter.random() / 2
