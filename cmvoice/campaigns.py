"""Campaigns in Redis: metadata, status (running, paused, cancelled), progress, duplicates.

Keys of campaign ``<id>``, all under ``cmvoice:campaign:<id>``::

    (hash)       metadata; ``status`` (dispatch reads it atomically before each POST), ``rate``
                 (dispatch's per-campaign limiter), row counters and the enqueue checkpoint
    :counts      call records by state and result code, moved by the ledger with each record
    :calls       sorted set: the instruction id of each enqueued row, scored by its line
    :rejected    sorted set: invalid and duplicate rows (line, field, rule, masked value)
    :seen        hash: keyed hash of each callee -> the first line that calls it
    :held        set: calls a paused campaign held back (filled by dispatch)
    :ended       hash: call attempts ended per minute (calls per minute, ETA)
    :lock        the ``campaign start`` enqueueing it now

Counters count call records, so a redial (a record of its own) is one more attempt; reports
follow each row's ``next_id`` chain to its last attempt.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import secrets
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

import redis

from cmvoice.campaign_rows import RowReader, fingerprint, load_template
from cmvoice.config import parse_rate
from cmvoice.errors import CampaignError, FieldError
from cmvoice.instructions import MODELS
from cmvoice.ledger import KEY_PREFIX, CallState, as_text
from cmvoice.publisher import DispatchPublisher
from cmvoice.runtime import Runtime
from cmvoice.worker import app

#: Seconds after a resume at which held calls are released once more: a dispatch that read
#: "paused" just before the resume adds its call to ``:held`` just after it (see resume()).
HELD_SWEEP_DELAY_S = 5.0
#: Minutes of ended calls averaged into "calls per minute".
RATE_WINDOW_MIN = 5
#: Ids handled per Redis round trip by cancel, report, resume and the errors file.
CHUNK = 1000
#: Namespace of campaign instruction ids: uuid5(namespace, "<campaign id>/<line>"), so a row
#: gets the same id on every run, and enqueueing it twice creates one record.
CAMPAIGN_NAMESPACE = uuid.UUID("0b6f3f2e-5d0c-4c35-9d1e-5a8f0e7b2c41")
#: Task that releases held calls once more after a resume.
RELEASE_HELD_TASK = "cmvoice.campaign.release_held"

_CAMPAIGN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ACTIVE_STATES = (CallState.QUEUED, CallState.DISPATCHING, CallState.PLACED, CallState.UNKNOWN)

# KEYS[1] campaign hash; ARGV[1] new status, ARGV[2] comma-separated statuses it may come from.
# Returns {outcome, status before, server time in ms}; outcome ok | refused | missing.
_SET_STATUS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', '', now} end
for s in string.gmatch(ARGV[2], '[^,]+') do
  if s == status then
    redis.call('HSET', KEYS[1], 'status', ARGV[1], ARGV[1] .. '_at', now)
    return {'ok', status, now}
  end
end
return {'refused', status, now}
"""

# KEYS[1] the :ended hash; ARGV[1] ttl in s. One more call attempt ended this minute; returns
# how many have so far.
_COUNT_ENDED = """
local minute = math.floor(tonumber(redis.call('TIME')[1]) / 60)
local count = redis.call('HINCRBY', KEYS[1], minute, 1)
redis.call('EXPIRE', KEYS[1], ARGV[1])
return count
"""


class CampaignStatus(StrEnum):
    """What dispatch does with the campaign's calls (checked atomically before each POST)."""

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


text = as_text


def _int(value: Any, default: int = 0) -> int:
    return int(text(value)) if value not in (None, b"", "") else default


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
    rate: str | None = None
    allow_duplicates: bool = False
    checkpoint_line: int = 0
    checkpoint_offset: int = 0
    published_line: int = 0
    salt: str = field(default="", repr=False)

    @classmethod
    def from_hash(cls, campaign_id: str, raw: dict[Any, Any]) -> Campaign:
        fields = {text(k): text(v) for k, v in raw.items()}
        return cls(
            campaign_id=campaign_id,
            name=fields.get("name", ""),
            kind=fields.get("kind", ""),
            file=fields.get("file", ""),
            file_format=fields.get("format", "csv"),
            fingerprint=fields.get("fingerprint", ""),
            size_bytes=_int(fields.get("size_bytes")),
            template=json.loads(fields.get("template") or "{}"),
            errors_path=fields.get("errors_path", ""),
            created_at_ms=_int(fields.get("created_at")),
            status=CampaignStatus(fields.get("status", "running")),
            enqueue_state=EnqueueState(fields.get("enqueue_state", "enqueuing")),
            rows_read=_int(fields.get("rows_read")),
            enqueued=_int(fields.get("enqueued")),
            invalid=_int(fields.get("invalid")),
            duplicates=_int(fields.get("duplicates")),
            rate=fields.get("rate") or None,
            allow_duplicates=fields.get("allow_duplicates") == "1",
            checkpoint_line=_int(fields.get("checkpoint_line")),
            checkpoint_offset=_int(fields.get("checkpoint_offset")),
            published_line=_int(fields.get("published_line")),
            salt=fields.get("salt", ""),
        )


@dataclass(frozen=True)
class CampaignProgress:
    """Where a campaign stands: calls by state and result code, speed and time left."""

    campaign: Campaign
    counts: dict[CallState, int]
    codes: dict[str, int]
    calls_per_minute: float
    eta_s: float | None
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
        """Calls not finished yet (queued, being dispatched, ringing, or of unknown outcome)."""
        return sum(self.counts.get(state, 0) for state in _ACTIVE_STATES)

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
            "attempts": self.attempts,
            "redials": self.redials,
            "active": self.active,
            "states": {state.value: count for state, count in self.counts.items()},
            "result_codes": dict(self.codes),
            "calls_per_minute": round(self.calls_per_minute, 1),
            "eta_s": None if self.eta_s is None else round(self.eta_s),
        }


class CampaignStore:
    """Campaigns in Redis: create, look up, pause, resume, cancel, status and report."""

    #: Sorted set of every campaign id, scored by creation time (``campaign list``).
    INDEX_KEY = f"{KEY_PREFIX}:campaigns"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.redis = runtime.redis
        self.ledger = runtime.ledger
        # Campaign keys outlive the records they describe by a day: a report still finds them.
        self.ttl_s = int(runtime.settings.retention) + 86400
        self._set_status = self.redis.register_script(_SET_STATUS)
        self._count_ended = self.redis.register_script(_COUNT_ENDED)

    # keys
    def key(self, campaign_id: str, part: str = "") -> str:
        base = self.ledger.campaign_key(campaign_id)
        return f"{base}:{part}" if part else base

    def _keys(self, campaign_id: str) -> list[str]:
        parts = ("", "counts", "calls", "rejected", "seen", "held", "ended")
        return [self.key(campaign_id, part) for part in parts]

    def touch(self, campaign_id: str, pipe: redis.client.Pipeline | None = None) -> None:
        """Keep the campaign's keys as long as the records they describe."""
        target = pipe if pipe is not None else self.redis.pipeline(transaction=False)
        for key in self._keys(campaign_id):
            target.expire(key, self.ttl_s)
        if pipe is None:
            target.execute()

    # lookup
    def find(self, campaign_id: str) -> Campaign | None:
        if not _CAMPAIGN_ID.fullmatch(campaign_id):
            return None
        raw = self.redis.hgetall(self.key(campaign_id))
        return Campaign.from_hash(campaign_id, raw) if raw else None

    def get(self, campaign_id: str) -> Campaign:
        campaign = self.find(campaign_id)
        if campaign is None:
            raise CampaignError(
                f"no campaign {campaign_id!r} (`cmvoice campaign list` shows the known ones)"
            )
        return campaign

    def list_campaigns(self) -> list[Campaign]:
        """Every known campaign, newest first; ids whose keys expired are forgotten."""
        ids = [text(item) for item in self.redis.zrevrange(self.INDEX_KEY, 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for campaign_id in ids:
            pipe.hgetall(self.key(campaign_id))
        campaigns, gone = [], []
        for campaign_id, raw in zip(ids, pipe.execute(), strict=True):
            if raw:
                campaigns.append(Campaign.from_hash(campaign_id, raw))
            else:
                gone.append(campaign_id)
        if gone:
            self.redis.zrem(self.INDEX_KEY, *gone)
        return campaigns

    # creation
    def create(
        self,
        kind: str,
        path: Path,
        *,
        template: dict[str, Any] | Path | None = None,
        name: str | None = None,
        rate: str | None = None,
        allow_duplicates: bool = False,
        errors_path: Path | None = None,
        file_format: str | None = None,
    ) -> Campaign:
        """Check the file's header, the template and the rate, then record a new campaign."""
        if kind not in MODELS:
            raise CampaignError(f"kind {kind!r}: must be one of {', '.join(MODELS)}")
        path = path.resolve()
        if not path.is_file():
            raise CampaignError(f"{path}: no such file")
        shared = load_template(kind, template)
        if rate is not None:
            try:
                rate = str(parse_rate(rate)) if rate.strip() else None
            except ValueError as exc:
                raise CampaignError(f"rate {rate!r}: {exc}") from None
        reader = RowReader(path, kind, file_format=file_format)
        reader.check_header()
        now_ms = self.ledger.server_time_ms()
        campaign_id = new_campaign_id(now_ms)
        errors = (errors_path or Path(f"campaign-{campaign_id}-errors.csv")).resolve()
        fields: dict[Any, str] = {
            "id": campaign_id,
            "name": name or path.name,
            "kind": kind,
            "file": str(path),
            "format": reader.format,
            "fingerprint": fingerprint(path),
            "size_bytes": str(reader.size_bytes),
            "template": json.dumps(shared, separators=(",", ":")),
            "errors_path": str(errors),
            "created_at": str(now_ms),
            "status": CampaignStatus.RUNNING.value,
            "enqueue_state": EnqueueState.ENQUEUING.value,
            "allow_duplicates": "1" if allow_duplicates else "0",
            # Callees are deduplicated by a keyed hash: Redis never holds a list of numbers.
            "salt": secrets.token_hex(16),
        }
        if rate:
            fields["rate"] = rate
        key = self.key(campaign_id)
        if not self.redis.hsetnx(key, "id", campaign_id):  # pragma: no cover - 2^32 ids a day
            raise CampaignError("campaign id collision; start again")
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping=fields)
        pipe.zadd(self.INDEX_KEY, {campaign_id: now_ms})
        self.touch(campaign_id, pipe)
        pipe.execute()
        return self.get(campaign_id)

    def set_errors_path(self, campaign_id: str, path: Path) -> None:
        """Write the errors of the rest of the campaign (and those so far) to ``path``."""
        self.redis.hset(self.key(campaign_id), "errors_path", str(path.resolve()))

    # control
    def _change_status(
        self, campaign_id: str, to: CampaignStatus, allowed: tuple[CampaignStatus, ...]
    ) -> tuple[bool, CampaignStatus, int]:
        self.get(campaign_id)
        outcome, before, now_ms = self._set_status(
            keys=[self.key(campaign_id)], args=[to.value, ",".join(s.value for s in allowed)]
        )
        if text(outcome) == "missing":
            raise CampaignError(f"campaign {campaign_id} expired")
        self.touch(campaign_id)
        return text(outcome) == "ok", CampaignStatus(text(before)), int(now_ms)

    def pause(self, campaign_id: str) -> int:
        """Stop sending the campaign's calls (calls already placed go on); returns Redis time.

        Takes effect at once: dispatch checks the status atomically before each POST, and holds
        a paused campaign's calls in ``:held`` until it resumes.
        """
        allowed = (CampaignStatus.RUNNING, CampaignStatus.PAUSED)
        changed, before, now_ms = self._change_status(campaign_id, CampaignStatus.PAUSED, allowed)
        if not changed:
            raise CampaignError(f"campaign {campaign_id} is {before.value}; it cannot be paused")
        return now_ms

    def resume(self, campaign_id: str) -> int:
        """Send the campaign's calls again; returns how many held calls were released.

        A dispatch that read "paused" just before the status changed adds its call to
        ``:held`` just after this release; a ``cmvoice.campaign.release_held`` task a few
        seconds later picks such a call up.
        """
        allowed = (CampaignStatus.PAUSED, CampaignStatus.RUNNING)
        changed, before, _ = self._change_status(campaign_id, CampaignStatus.RUNNING, allowed)
        if not changed:
            raise CampaignError(f"campaign {campaign_id} is {before.value}; it cannot be resumed")
        released = self.release_held(campaign_id)
        app.send_task(
            RELEASE_HELD_TASK,
            args=[campaign_id],
            countdown=HELD_SWEEP_DELAY_S,
            ignore_result=True,
        )
        return released

    def release_held(self, campaign_id: str) -> int:
        """Dispatch the calls a pause held back, if the campaign runs; returns how many."""
        held_key = self.key(campaign_id, "held")
        released = 0
        with DispatchPublisher() as publisher:
            while True:
                status = self.redis.hget(self.key(campaign_id), "status")
                if status is None or text(status) != CampaignStatus.RUNNING.value:
                    return released
                # Publish, then forget: a crash in between publishes twice (harmless), loses none.
                ids = [text(item) for item in self.redis.srandmember(held_key, CHUNK) or []]
                if not ids:
                    return released
                publisher.publish(ids)
                self.redis.srem(held_key, *ids)
                released += len(ids)

    def cancel(self, campaign_id: str) -> tuple[int, int]:
        """Cancel: queued calls become CANCELLED and are never POSTed; placed calls finish.

        Returns (calls cancelled, Redis time of the cancel in ms). The status change alone
        stops every later POST (dispatch checks it atomically); moving the queued records to
        CANCELLED here makes the counters show it at once.
        """
        allowed = tuple(CampaignStatus)
        _, _, now_ms = self._change_status(campaign_id, CampaignStatus.CANCELLED, allowed)
        reason = "campaign cancelled"
        cancelled = 0
        for chunk in self.call_chunks(campaign_id):
            ids = [instruction_id for instruction_id, _ in chunk]
            while ids:
                cancelled += self.ledger.cancel_many(ids, reason)
                # A redial waiting for its time is a record of its own, found through next_id.
                pipe = self.redis.pipeline(transaction=False)
                for instruction_id in ids:
                    pipe.hget(self.ledger.key(instruction_id), "next_id")
                ids = [text(next_id) for next_id in pipe.execute() if next_id]
        held_key = self.key(campaign_id, "held")
        for held in chunks(self.redis.sscan_iter(held_key, count=CHUNK), CHUNK):
            cancelled += self.ledger.cancel_many([text(item) for item in held], reason)
        self.redis.delete(held_key)
        return cancelled, now_ms

    # counting
    def record_ended(self, campaign_id: str) -> None:
        """One call attempt of the campaign ended (a callback arrived): for calls per minute."""
        count = self._count_ended(keys=[self.key(campaign_id, "ended")], args=[self.ttl_s])
        if int(count) == 1:
            # Once a minute at most: a running campaign's keys live as long as its calls.
            self.touch(campaign_id)

    def progress(self, campaign_id: str) -> CampaignProgress:
        """Counts by state and result code, calls per minute and the time left, now."""
        campaign = self.get(campaign_id)
        if campaign.enqueue_state is EnqueueState.ENQUEUING and not self.redis.exists(
            self.key(campaign_id, "lock")
        ):
            # The start that was enqueueing it died without a word (killed): say so.
            campaign = dataclasses.replace(campaign, enqueue_state=EnqueueState.INTERRUPTED)
        now_ms = self.ledger.server_time_ms()
        raw = self.redis.hgetall(self.key(campaign_id, "counts"))
        counts: dict[CallState, int] = {}
        codes: dict[str, int] = {}
        for name, value in ((text(k), int(v)) for k, v in raw.items()):
            if name.startswith("code:"):
                codes[name.removeprefix("code:")] = value
            elif value:
                counts[CallState(name)] = value
        calls_per_minute = self._calls_per_minute(campaign, now_ms)
        active = sum(counts.get(state, 0) for state in _ACTIVE_STATES)
        eta_s: float | None = None
        if campaign.status is CampaignStatus.RUNNING and active:
            if calls_per_minute > 0:
                eta_s = active / calls_per_minute * 60
            elif campaign.rate:
                eta_s = active / parse_rate(campaign.rate).per_second
        elif not active:
            eta_s = 0.0
        return CampaignProgress(campaign, counts, codes, calls_per_minute, eta_s, now_ms)

    def _calls_per_minute(self, campaign: Campaign, now_ms: int) -> float:
        minute = now_ms // 60_000
        minutes = [str(m) for m in range(minute - RATE_WINDOW_MIN, minute + 1)]
        ended = sum(
            _int(v) for v in self.redis.hmget(self.key(campaign.campaign_id, "ended"), minutes)
        )
        if not ended:
            return 0.0
        # The window: the last full minutes plus the current one so far, or the campaign's age.
        window_min = RATE_WINDOW_MIN + (now_ms % 60_000) / 60_000
        age_min = max((now_ms - campaign.created_at_ms) / 60_000, 1 / 60)
        return ended / min(window_min, age_min)

    # report
    def call_chunks(self, campaign_id: str) -> Iterator[list[tuple[str, int]]]:
        """(instruction id, line) of every enqueued row, in line order, a chunk at a time."""
        key = self.key(campaign_id, "calls")
        after = "-inf"
        while True:
            # Paged by line, not by rank: a start still enqueueing only adds later lines.
            chunk = cast(
                list[tuple[bytes, float]],
                self.redis.zrangebyscore(key, after, "+inf", start=0, num=CHUNK, withscores=True),
            )
            if not chunk:
                return
            yield [(text(member), int(score)) for member, score in chunk]
            after = f"({int(chunk[-1][1])}"

    def rejected_entries(
        self, campaign_id: str, *, max_line: int | None = None
    ) -> Iterator[tuple[int, FieldError, RowOutcome]]:
        """Every rejected row's errors, in line order (each row may have several)."""
        key = self.key(campaign_id, "rejected")
        high: int | str = "+inf" if max_line is None else max_line
        start = 0
        while True:
            chunk = cast(
                list[bytes], self.redis.zrangebyscore(key, "-inf", high, start=start, num=CHUNK)
            )
            if not chunk:
                return
            for member in chunk:
                line, name, rule, value, outcome = json.loads(member)
                yield int(line), FieldError(name, rule, value), RowOutcome(outcome)
            start += CHUNK
