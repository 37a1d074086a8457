"""Calls as the ledger speaks of them: their states, a record's snapshot, and what a claim,
a send and a finish can answer (docs/architecture.md, "Ledger")."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class CallState(StrEnum):
    """Where a call is in its life."""

    QUEUED = "QUEUED"
    DISPATCHING = "DISPATCHING"
    PLACED = "PLACED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {CallState.FINISHED, CallState.FAILED, CallState.CANCELLED, CallState.EXPIRED}
)
#: States a call is still in progress in (counted as "active" by campaigns).
ACTIVE_STATES = (CallState.QUEUED, CallState.DISPATCHING, CallState.PLACED, CallState.UNKNOWN)


class SendDecision(StrEnum):
    """Whether a claimed call may be POSTed now, after its rate wait."""

    SENDING = "sending"
    LOST = "lost"
    PAUSED = "paused"
    CANCELLED = "cancelled"


class FinishOutcome(StrEnum):
    """What recording a callback did."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    MISSING = "missing"
    #: The callback names another call-id than CM gave when the call was placed.
    MISMATCH = "mismatch"
    #: The call cannot have had a callback (never sent, or refused by CM).
    REFUSED = "refused"


@dataclass(frozen=True)
class CallRecord:
    """A snapshot of one call's ledger record. ``payload`` never holds the OTP code."""

    instruction_id: str
    kind: str
    state: CallState
    payload: dict[str, Any]
    fields: dict[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)

    def get_int(self, name: str, default: int = 0) -> int:
        value = self.fields.get(name)
        return int(value) if value not in (None, "") else default

    @property
    def attempts(self) -> int:
        return self.get_int("attempts")

    @property
    def campaign_id(self) -> str | None:
        return self.fields.get("campaign_id") or None

    @property
    def call_id(self) -> str | None:
        return self.fields.get("call_id") or None

    @property
    def last_error(self) -> str:
        return self.get("last_error")


@dataclass(frozen=True)
class Claim:
    """The right to dispatch one record, proven by ``token`` on every later transition.

    ``wait_s`` is the rate turn to wait for before the POST; ``sending`` says whether the record
    is already marked sent (no wait), or ``mark_sending`` must do it after the wait.
    """

    record: CallRecord
    token: str
    code: str | None  # the OTP code, handed only to the dispatcher that POSTs it
    wait_s: float = 0.0
    sending: bool = False


@dataclass(frozen=True)
class Parked:
    """The call may not go now; it waits in Redis (a backlog or the waiting room) until ``why``."""

    why: str


@dataclass(frozen=True)
class Ended:
    """The claim ended the call instead: EXPIRED, FAILED (token or a calling rule refused it)
    or CANCELLED; ``rule`` names the calling rule, if one did."""

    state: CallState
    why: str
    rule: str = ""


ClaimOutcome = Claim | Parked | Ended | CallState | None


@dataclass(frozen=True)
class DispatchLimits:
    """The account's limits a claim takes its share of (docs/architecture.md, "Limits").

    Args:
        account_key: the account's hash (rate timeline, bad-token breaker).
        slots_key: the account's concurrency slots.
        interval_s: the gap between two sends at the account's rate.
        slot_limit: calls in progress at most.
        slot_lease_s: how long a slot is held if its call's end never comes.
        campaign_slot_limit: slots campaign calls hold at most (the rest are kept for
            interactive calls; 0: no limit of their own).
        max_wait_interactive_s: longest rate wait an interactive call spends in its thread.
        max_wait_campaign_s: the same for a campaign call (the pacer keeps it short).
        number_limit: calls allowed per number within ``number_window_s`` (0: no limit).
        number_cooldown_s: a campaign call to a number another campaign call reached within
            this is refused (0: none).
    """

    account_key: str
    slots_key: str
    interval_s: float
    slot_limit: int
    slot_lease_s: float
    campaign_slot_limit: int
    max_wait_interactive_s: float
    max_wait_campaign_s: float
    number_limit: int = 0
    number_window_s: float = 0.0
    number_cooldown_s: float = 0.0

    def begin_args(self) -> tuple[list[int], list[int]]:
        """The limits as lua/begin.lua reads them: the rate and slot numbers (µs, ms), and the
        per-number and campaign-share checks (ms)."""
        numbers = [
            round(self.interval_s * 1_000_000),
            round(self.max_wait_interactive_s * 1_000_000),
            round(self.max_wait_campaign_s * 1_000_000),
            self.slot_limit,
            int(self.slot_lease_s * 1000),
        ]
        checks = [
            self.number_limit,
            int(self.number_window_s * 1000),
            int(self.number_cooldown_s * 1000),
            self.campaign_slot_limit,
        ]
        return numbers, checks


@dataclass(frozen=True)
class Delivery:
    """One outcome message for one result task, kept in the outbox until confirmed.

    ``member`` names it in the outbox, ``stored`` is what the reconciler re-publishes from, and
    ``envelope`` the broker message pushed with the transition ('' when published after it).
    """

    task_name: str
    member: str
    stored: str
    queue_key: str
    envelope: bytes | str = ""
