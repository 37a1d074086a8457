"""What a campaign is: its metadata, statuses, ids, and its progress (pure, no Redis)."""

from __future__ import annotations

import itertools
import json
import secrets
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cmvoice.calls import ACTIVE_STATES, TERMINAL_STATES, CallState
from cmvoice.config import parse_rate
from cmvoice.replies import as_int, as_text

#: Namespace of campaign instruction ids: uuid5(namespace, "<campaign id>/<line>"), so a row
#: gets the same id on every run, and enqueueing it twice creates one record.
CAMPAIGN_NAMESPACE = uuid.UUID("0b6f3f2e-5d0c-4c35-9d1e-5a8f0e7b2c41")
#: The backlog group of calls whose time zones do not matter (no calling window applies).
ANY_ZONE = "any"


class CampaignStatus(StrEnum):
    """Whether the pacer releases the campaign's calls (checked atomically at release and send)."""

    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"


class EnqueueState(StrEnum):
    """How far ``campaign start`` got through the file."""

    ENQUEUING = "enqueuing"
    INTERRUPTED = "interrupted"
    COMPLETE = "complete"


class RowOutcome(StrEnum):
    """Why a row is in the errors file."""

    INVALID = "INVALID"
    DUPLICATE = "DUPLICATE"
    #: A duplicate dialed anyway (``allow_duplicates``): reported, and in the report as a call.
    DUPLICATE_DIALED = "DUPLICATE_DIALED"
    #: A calling rule refuses the number (suppressed, country, no time zone known).
    REFUSED = "REFUSED"


def spreadsheet_safe(cell: object) -> str:
    """A CSV cell a spreadsheet shows as text: ``=...`` or ``@...`` from a file is no formula.

    ``+`` and ``-`` are left alone: phone numbers start with ``+``.
    """
    value = str(cell)
    return "'" + value if value[:1] in ("=", "@") else value


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` items (the last one shorter), without reading ahead further."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def instruction_id_for(campaign_id: str, line: int) -> str:
    """The instruction id of the row at ``line``: always the same, on every run."""
    return str(uuid.uuid5(CAMPAIGN_NAMESPACE, f"{campaign_id}/{line}"))


def new_campaign_id(now_ms: int) -> str:
    """``20261126-1f2e3d4c``: sortable by day, short enough to type."""
    day = datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%Y%m%d")
    return f"{day}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Campaign:
    """A snapshot of a campaign's metadata, as kept in its Redis hash."""

    campaign_id: str
    name: str
    kind: str
    file: str
    file_format: str
    fingerprint: str
    size_bytes: int
    template: dict[str, Any]
    errors_path: str
    created_at_ms: int
    status: CampaignStatus
    enqueue_state: EnqueueState
    rows_read: int = 0
    enqueued: int = 0
    invalid: int = 0
    duplicates: int = 0
    refused: int = 0
    rate: str | None = None
    window: str | None = None
    days: str | None = None
    until_ms: int = 0
    allow_duplicates: bool = False
    checkpoint_line: int = 0
    checkpoint_offset: int = 0
    salt: str = field(default="", repr=False)

    @classmethod
    def from_hash(cls, campaign_id: str, raw: dict[Any, Any], template: str = "{}") -> Campaign:
        """From the campaign's hash; ``template`` is its (decrypted) template JSON."""
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        return cls(
            campaign_id=campaign_id,
            name=fields.get("name", ""),
            kind=fields.get("kind", ""),
            file=fields.get("file", ""),
            file_format=fields.get("format", "csv"),
            fingerprint=fields.get("fingerprint", ""),
            size_bytes=as_int(fields.get("size_bytes")),
            template=json.loads(template or "{}"),
            errors_path=fields.get("errors_path", ""),
            created_at_ms=as_int(fields.get("created_at")),
            status=CampaignStatus(fields.get("status", "running")),
            enqueue_state=EnqueueState(fields.get("enqueue_state", "enqueuing")),
            rows_read=as_int(fields.get("rows_read")),
            enqueued=as_int(fields.get("enqueued")),
            invalid=as_int(fields.get("invalid")),
            duplicates=as_int(fields.get("duplicates")),
            refused=as_int(fields.get("refused")),
            rate=fields.get("rate") or None,
            window=fields.get("window") or None,
            days=fields.get("days") or None,
            until_ms=as_int(fields.get("until")),
            allow_duplicates=fields.get("allow_duplicates") == "1",
            checkpoint_line=as_int(fields.get("checkpoint_line")),
            checkpoint_offset=as_int(fields.get("checkpoint_offset")),
            salt=fields.get("salt", ""),
        )


@dataclass(frozen=True)
class Backlog:
    """The campaign's calls waiting in Redis for the pacer: due now, and due later (redials,
    retries, calls a closed window holds), with the latest due time."""

    due_now: int = 0
    due_later: int = 0
    last_due_ms: int = 0

    @property
    def total(self) -> int:
        return self.due_now + self.due_later


def estimate_eta_s(
    *,
    remaining: int,
    backlog: Backlog,
    now_ms: int,
    calls_per_minute: float,
    rate_per_s: float | None,
) -> float | None:
    """Seconds until the campaign's last call ends, or None when nothing tells the speed.

    The speed is what was measured over the last minutes, else the campaign's own rate. Calls
    due later (a redial in 5 minutes) cannot end before they are due, however fast the rest
    goes: the estimate is never shorter than the wait for the latest of them.
    """
    if remaining <= 0:
        return 0.0
    per_s = calls_per_minute / 60 if calls_per_minute > 0 else rate_per_s
    if not per_s:
        return None
    by_speed = remaining / per_s
    by_due = (backlog.last_due_ms - now_ms) / 1000 if backlog.due_later else 0.0
    return max(by_speed, by_due)


@dataclass(frozen=True)
class CampaignProgress:
    """Where a campaign stands: calls by state and code, backlog, speed and time left."""

    campaign: Campaign
    counts: dict[CallState, int]
    codes: dict[str, int]
    backlog: Backlog
    #: Calls a calling rule refused, at enqueue (rows) or at dispatch (cooldown, limits).
    refused_by_rule: dict[str, int]
    calls_per_minute: float
    now_ms: int

    @property
    def attempts(self) -> int:
        """Call records of the campaign: one per enqueued row, plus one per redial."""
        return sum(self.counts.values())

    @property
    def redials(self) -> int:
        return max(self.attempts - self.campaign.enqueued, 0)

    @property
    def active(self) -> int:
        """Calls not ended yet (waiting, being dispatched, ringing, or of unknown outcome)."""
        return sum(self.counts.get(state, 0) for state in ACTIVE_STATES)

    @property
    def in_flight(self) -> int:
        """Active calls that left the backlog: released, being sent, ringing or unknown."""
        return max(self.active - self.backlog.total, 0)

    @property
    def done(self) -> int:
        return sum(self.counts.get(state, 0) for state in TERMINAL_STATES)

    @property
    def eta_s(self) -> float | None:
        # By status, not phase: a campaign paused while its file is still read shows the
        # phase "enqueuing", and releases nothing all the same.
        if self.campaign.status is not CampaignStatus.RUNNING:
            return None
        rate = parse_rate(self.campaign.rate).per_second if self.campaign.rate else None
        return estimate_eta_s(
            remaining=self.active,
            backlog=self.backlog,
            now_ms=self.now_ms,
            calls_per_minute=self.calls_per_minute,
            rate_per_s=rate,
        )

    @property
    def phase(self) -> str:
        """enqueuing, interrupted, running, paused, cancelled or finished."""
        campaign = self.campaign
        if campaign.status is CampaignStatus.CANCELLED:
            return "cancelled"
        if campaign.enqueue_state is not EnqueueState.COMPLETE:
            return campaign.enqueue_state.value
        if campaign.status is CampaignStatus.PAUSED:
            return "paused"
        return "running" if self.active else "finished"

    def to_dict(self) -> dict[str, Any]:
        campaign = self.campaign
        eta = self.eta_s
        return {
            "campaign_id": campaign.campaign_id,
            "name": campaign.name,
            "kind": campaign.kind,
            "phase": self.phase,
            "status": campaign.status.value,
            "enqueue_state": campaign.enqueue_state.value,
            "rate": campaign.rate,
            "rows_read": campaign.rows_read,
            "enqueued": campaign.enqueued,
            "invalid": campaign.invalid,
            "duplicates": campaign.duplicates,
            "refused": campaign.refused,
            "refused_by_rule": dict(self.refused_by_rule),
            "window": campaign.window,
            "days": campaign.days,
            "until": _iso(campaign.until_ms) if campaign.until_ms else None,
            "expired": self.counts.get(CallState.EXPIRED, 0),
            "attempts": self.attempts,
            "redials": self.redials,
            "active": self.active,
            "backlog": self.backlog.total,
            "backlog_due_later": self.backlog.due_later,
            "in_flight": self.in_flight,
            "done": self.done,
            "states": {state.value: count for state, count in self.counts.items()},
            "result_codes": {code: count for code, count in self.codes.items()},
            "calls_per_minute": round(self.calls_per_minute, 1),
            "eta_s": None if eta is None else round(eta),
            "updated_at": _iso(self.now_ms),
        }


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")
