"""CampaignStore: campaigns in Redis, the one owner of their keys (docs/architecture.md).

Keys of campaign ``<id>`` (names from ``cmvoice.keyspace.Keys.campaign``)::

    (hash)        metadata; ``status`` (read atomically at release and before each POST),
                  ``rate`` and ``tat`` (the pacer's per-campaign limit), counters, checkpoint
    :counts       call records by state and result code, moved by the ledger with each record
    :calls        sorted set: the instruction id of each enqueued row, scored by its line
    :rejected     sorted set: invalid and duplicate rows (line, field, rule, masked value)
    :seen         hash: keyed hash of each callee -> the first line that calls it
    :groups       set: the time-zone groups that have a backlog
    :backlog:<g>  sorted set: calls of group <g> waiting for the pacer, by due time (ms)
    :ended        hash: call attempts ended per minute (speed, ETA)
    :placed       hash: calls placed per minute; :outcomes: minute:code -> calls (the page)
    :lock         the ``campaign start`` enqueueing it now

Counters count call records, so a redial (a record of its own) is one more attempt; reports
follow each row's ``next_id`` chain to its last attempt.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import redis

from cmvoice import lua
from cmvoice.calls import CallState
from cmvoice.campaigns.model import (
    Backlog,
    Campaign,
    CampaignProgress,
    CampaignStatus,
    EnqueueState,
    RowOutcome,
    new_campaign_id,
)
from cmvoice.campaigns.rows import RowReader, fingerprint, load_template
from cmvoice.config import parse_rate
from cmvoice.errors import CampaignError, FieldError
from cmvoice.instructions import MODELS
from cmvoice.replies import as_int, as_text
from cmvoice.rules.windows import format_days, parse_days, parse_window
from cmvoice.runtime import Runtime

#: Minutes of ended calls averaged into "calls per minute".
RATE_WINDOW_MIN = 5
#: Ids handled per Redis round trip by cancel, report and the errors file.
CHUNK = 1000

_CAMPAIGN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Parts of a campaign that live as long as it does (backlogs are found through ``groups``).
_PARTS = ("", "counts", "calls", "rejected", "seen", "groups", "ended", "placed", "outcomes")


class CampaignStore:
    """Campaigns in Redis: create, look up, status changes, backlogs, progress and report rows."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.redis = runtime.redis
        self.ledger = runtime.ledger
        self.keys = runtime.keys
        self.cipher = runtime.cipher
        # Campaign keys outlive the records they describe by a day: a report still finds them.
        self.ttl_s = int(runtime.settings.retention) + 86400
        self._set_status = lua.load(self.redis, "campaign_status")

    # keys
    def key(self, campaign_id: str, part: str = "") -> str:
        return self.keys.campaign(campaign_id, part)

    def backlog_key(self, campaign_id: str, group: str) -> str:
        return self.keys.backlog(campaign_id, group)

    def groups(self, campaign_id: str) -> list[str]:
        """The time-zone groups of the campaign's backlog."""
        return sorted(as_text(g) for g in self.redis.smembers(self.key(campaign_id, "groups")))

    def touch(self, campaign_id: str, pipe: redis.client.Pipeline | None = None) -> None:
        """Keep the campaign's keys as long as the records they describe."""
        target = pipe if pipe is not None else self.redis.pipeline(transaction=False)
        for part in _PARTS:
            target.expire(self.key(campaign_id, part), self.ttl_s)
        if pipe is None:
            target.execute()

    # lookup
    def find(self, campaign_id: str) -> Campaign | None:
        if not _CAMPAIGN_ID.fullmatch(campaign_id):
            return None
        raw = self.redis.hgetall(self.key(campaign_id))
        return self._campaign(campaign_id, raw) if raw else None

    def get(self, campaign_id: str) -> Campaign:
        campaign = self.find(campaign_id)
        if campaign is None:
            raise CampaignError(
                f"no campaign {campaign_id!r} (`cmvoice campaign list` shows the known ones)"
            )
        return campaign

    def _campaign(self, campaign_id: str, raw: dict[Any, Any]) -> Campaign:
        template = self.cipher.open(as_text(raw.get(b"template") or raw.get("template") or "{}"))
        return Campaign.from_hash(campaign_id, raw, template)

    def list_campaigns(self) -> list[Campaign]:
        """Every known campaign, newest first; ids whose keys expired are forgotten."""
        ids = [as_text(item) for item in self.redis.zrevrange(self.keys.campaigns(), 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for campaign_id in ids:
            pipe.hgetall(self.key(campaign_id))
        campaigns, gone = [], []
        for campaign_id, raw in zip(ids, pipe.execute(), strict=True):
            if raw:
                campaigns.append(self._campaign(campaign_id, raw))
            else:
                gone.append(campaign_id)
        if gone:
            self.redis.zrem(self.keys.campaigns(), *gone)
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
        window: str | None = None,
        days: str | None = None,
        until_ms: int | None = None,
    ) -> Campaign:
        """Check the file's header, the template and the rate, then record a new campaign.

        ``window`` and ``days`` are its calling window in each callee's local time (default:
        CMVOICE_CALLING_WINDOW and CMVOICE_CALLING_DAYS); ``until_ms`` its deadline (Redis
        time in ms): a call not placed by then ends EXPIRED.
        """
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
        try:
            window = str(parse_window(window)) if window else None
            days = format_days(parse_days(days)) if days else None
        except ValueError as exc:
            raise CampaignError(f"calling window: {exc}") from None
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
            # The template may hold the caller's number and a prompt: encrypted at rest too.
            "template": self.cipher.seal(json.dumps(shared, separators=(",", ":"))),
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
        if window:
            fields["window"] = window
        if days:
            fields["days"] = days
        if until_ms:
            fields["until"] = str(until_ms)
        key = self.key(campaign_id)
        if not self.redis.hsetnx(key, "id", campaign_id):  # pragma: no cover - 2^32 ids a day
            raise CampaignError("campaign id collision; start again")
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping=fields)
        pipe.zadd(self.keys.campaigns(), {campaign_id: now_ms})
        self.touch(campaign_id, pipe)
        pipe.execute()
        return self.get(campaign_id)

    def set_errors_path(self, campaign_id: str, path: Path) -> None:
        """Write the errors of the rest of the campaign (and those so far) to ``path``."""
        self.redis.hset(self.key(campaign_id), "errors_path", str(path.resolve()))

    def status_of(self, campaign_id: str) -> CampaignStatus | None:
        status = self.redis.hget(self.key(campaign_id), "status")
        return CampaignStatus(as_text(status)) if status else None

    def change_status(
        self, campaign_id: str, to: CampaignStatus, allowed: tuple[CampaignStatus, ...]
    ) -> tuple[bool, CampaignStatus, int]:
        """Set the status if it is one of ``allowed``: (changed, status before, Redis time)."""
        self.get(campaign_id)
        outcome, before, now_ms = self._set_status(
            keys=[self.key(campaign_id), self.keys.active_campaigns(), self.keys.pacer_wake()],
            args=[to.value, ",".join(s.value for s in allowed)],
        )
        if as_text(outcome) == "missing":
            raise CampaignError(f"campaign {campaign_id} expired")
        self.touch(campaign_id)
        return as_text(outcome) == "ok", CampaignStatus(as_text(before)), int(now_ms)

    # backlog
    def backlog(self, campaign_id: str, now_ms: int) -> Backlog:
        """How many calls wait in the backlog, due now and later, and the latest due time."""
        groups = self.groups(campaign_id)
        pipe = self.redis.pipeline(transaction=False)
        for group in groups:
            key = self.backlog_key(campaign_id, group)
            pipe.zcount(key, "-inf", now_ms)
            pipe.zcount(key, f"({now_ms}", "+inf")
            pipe.zrange(key, -1, -1, withscores=True)
        results = pipe.execute()
        due_now = due_later = last_due = 0
        for index in range(0, len(results), 3):
            due_now += int(results[index])
            due_later += int(results[index + 1])
            if results[index + 2]:
                last_due = max(last_due, int(results[index + 2][0][1]))
        return Backlog(due_now=due_now, due_later=due_later, last_due_ms=last_due)

    def end_backlog(self, campaign_id: str, to: CallState, reason: str) -> int:
        """End every call waiting in the backlog (cancel, a deadline passed), no dispatch task
        run for any; returns how many ended. The caller stopped the pacer releasing them first
        (a status change, checked atomically at release)."""
        ended = 0
        for group in self.groups(campaign_id):
            key = self.backlog_key(campaign_id, group)
            # Always from the head: the ids taken are removed, so nothing is skipped.
            while ids := [as_text(member) for member in self.redis.zrange(key, 0, CHUNK - 1)]:
                ended += self.ledger.end_many(ids, to, reason)
                self.redis.zrem(key, *ids)
        return ended

    # progress
    def progress(self, campaign_id: str) -> CampaignProgress:
        """Counts by state and result code, the backlog, speed and time left, now."""
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
        rules: dict[str, int] = {}
        for name, value in ((as_text(k), int(v)) for k, v in raw.items()):
            if name.startswith("code:"):
                codes[name.removeprefix("code:")] = value
            elif name.startswith("rule:"):
                rules[name.removeprefix("rule:")] = value
            elif value:
                counts[CallState(name)] = value
        return CampaignProgress(
            campaign=campaign,
            counts=counts,
            codes=codes,
            backlog=self.backlog(campaign_id, now_ms),
            refused_by_rule=rules,
            calls_per_minute=self._calls_per_minute(campaign, now_ms),
            now_ms=now_ms,
        )

    def _calls_per_minute(self, campaign: Campaign, now_ms: int) -> float:
        minute = now_ms // 60_000
        minutes = [str(m) for m in range(minute - RATE_WINDOW_MIN, minute + 1)]
        key = self.key(campaign.campaign_id, "ended")
        ended = sum(as_int(value) for value in self.redis.hmget(key, minutes))
        if not ended:
            return 0.0
        # The window: the last full minutes plus the current one so far, or the campaign's age.
        window_min = RATE_WINDOW_MIN + (now_ms % 60_000) / 60_000
        age_min = max((now_ms - campaign.created_at_ms) / 60_000, 1 / 60)
        return ended / min(window_min, age_min)

    def per_minute(self, campaign_id: str) -> tuple[dict[int, int], dict[int, dict[int, int]]]:
        """Calls placed per minute, and outcomes per minute and result code (the page)."""
        placed = {
            int(minute): int(count)
            for minute, count in self.redis.hgetall(self.key(campaign_id, "placed")).items()
        }
        outcomes: dict[int, dict[int, int]] = {}
        for field, count in self.redis.hgetall(self.key(campaign_id, "outcomes")).items():
            minute, _, code = as_text(field).partition(":")
            if code.lstrip("-").isdigit():
                outcomes.setdefault(int(minute), {})[int(code)] = int(count)
        return placed, outcomes

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
            yield [(as_text(member), int(score)) for member, score in chunk]
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
