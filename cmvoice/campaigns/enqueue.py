"""``campaign start``: stream a file into the ledger and the campaign's backlog, batch by batch.

Each batch is validated in memory, checked for duplicate callees (one round trip), committed
in one MULTI/EXEC (records, the backlog, the campaign's indexes, counters and the checkpoint:
all or nothing), then its errors are appended to the errors file. Nothing is published: the
pacer releases the backlog as the account's rate and slots allow. A run stopped anywhere
leaves a campaign that ``--resume`` continues after its checkpoint, with the same instruction
id for each row, so no row is ever enqueued twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from cmvoice.calls import CallState
from cmvoice.campaigns.errors_file import ErrorsFile
from cmvoice.campaigns.guards import EnqueueGuards
from cmvoice.campaigns.model import (
    ANY_ZONE,
    Campaign,
    CampaignStatus,
    EnqueueState,
    RowOutcome,
    instruction_id_for,
)
from cmvoice.campaigns.plan import campaign_policy
from cmvoice.campaigns.rows import RowReader, RowValidator, SourceRow, fingerprint
from cmvoice.campaigns.store import CampaignStore
from cmvoice.errors import CampaignError, FieldError, InvalidInstruction
from cmvoice.lease import Lease
from cmvoice.privacy import mask_number
from cmvoice.rules.enforce import (
    COUNTRY,
    NO_ZONE,
    ON_SUPPRESSION_LIST,
    SUPPRESSED,
    WINDOW,
    CallingRules,
    NumberFacts,
    facts,
    number_hash,
)
from cmvoice.runtime import Runtime

logger = logging.getLogger(__name__)

#: Rows validated and committed per Redis transaction (and per progress update).
DEFAULT_BATCH_ROWS = 1000


@dataclass(frozen=True)
class EnqueueProgress:
    """Totals after each committed batch, for a progress bar."""

    rows_read: int
    enqueued: int
    invalid: int
    duplicates: int
    line: int
    position_bytes: int
    size_bytes: int


@dataclass(frozen=True)
class EnqueueReport:
    """What one ``campaign start`` (or ``--resume``) run did, with the campaign's totals."""

    campaign_id: str
    state: EnqueueState
    rows_read: int
    enqueued: int
    invalid: int
    duplicates: int
    errors_path: str | None
    elapsed_s: float
    rows_this_run: int
    stopped_because: str = ""


@dataclass
class _Run:
    """How one run is going: rows read by it, and how it ended."""

    rows: int = 0
    state: EnqueueState = EnqueueState.INTERRUPTED
    stopped_because: str = ""


@dataclass
class _Batch:
    """A batch's rows sorted into calls to enqueue and rows to report."""

    rows_read: int = 0
    invalid: int = 0
    duplicates: int = 0
    #: Rows a calling rule refused, by rule.
    refused: dict[str, int] = field(default_factory=dict)
    #: (line, instruction id, payload, what the rules know of its number) of each call.
    calls: list[tuple[int, str, dict[str, Any], NumberFacts]] = field(default_factory=list)
    rejected: list[tuple[int, FieldError, RowOutcome]] = field(default_factory=list)

    def refuse(self, line: int, rule: str, error: FieldError) -> None:
        self.refused[rule] = self.refused.get(rule, 0) + 1
        self.rejected.append((line, error, RowOutcome.REFUSED))


class CampaignEnqueuer:
    """Streams a campaign's file into the ledger and the dispatch queue, batch by batch.

    Args:
        store: the campaigns' Redis.
        campaign: a new campaign, or one to resume after its checkpoint.
        path: the file (default: the one the campaign was created with); it must be unchanged.
        batch_rows: rows per committed batch.
    """

    def __init__(
        self,
        store: CampaignStore,
        campaign: Campaign,
        *,
        path: Path | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> None:
        self.store = store
        self.campaign = campaign
        self.path = (path or Path(campaign.file)).resolve()
        self.batch_rows = max(1, batch_rows)
        if not self.path.is_file():
            raise CampaignError(f"{self.path}: no such file")
        if fingerprint(self.path) != campaign.fingerprint:
            raise CampaignError(
                f"{self.path} is not the file campaign {campaign.campaign_id} was started with "
                f"({campaign.file}), or it changed since; resuming it could skip or repeat rows"
            )
        self.size_bytes = self.path.stat().st_size
        self.validator = RowValidator(campaign.kind, campaign.template)
        self._salt = bytes.fromhex(campaign.salt)
        self.guards = EnqueueGuards(store)
        self.rules = CallingRules(store.runtime)
        # The backlog groups calls by time zones only when a calling window applies to the
        # campaign (it does, unless its window is every hour of every day).
        self.by_zone = not campaign_policy(store.runtime.settings, campaign).always_open

    def _callee_hash(self, callee: str) -> str:
        return hmac.new(self._salt, callee.encode(), hashlib.sha256).hexdigest()[:32]

    def run(
        self,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[[EnqueueProgress], None] | None = None,
    ) -> EnqueueReport:
        """Enqueue every row after the checkpoint; stop early, consistently, when asked.

        ``should_stop`` is asked after each committed batch; ``on_progress`` hears of each.
        """
        store, cid = self.store, self.campaign.campaign_id
        started = time.monotonic()
        lock = self.guards.acquire_lock(cid)
        run = _Run()
        try:
            # Read once the lock is held: no other start can move the checkpoint any more.
            self.campaign = store.get(cid)
            if self.campaign.enqueue_state is EnqueueState.COMPLETE:
                run.state, run.stopped_because = EnqueueState.COMPLETE, "already complete"
            elif self.campaign.status is CampaignStatus.CANCELLED:
                raise CampaignError(f"campaign {cid} was cancelled; nothing more is enqueued")
            else:
                store.redis.hset(store.key(cid), "enqueue_state", EnqueueState.ENQUEUING.value)
                self._run_batches(run, lock, should_stop, on_progress)
        finally:
            with contextlib.suppress(redis.RedisError):
                fields: dict[Any, str] = {"enqueue_state": run.state.value}
                if run.state is EnqueueState.COMPLETE:
                    fields["enqueue_finished_at"] = str(store.ledger.server_time_ms())
                store.redis.hset(store.key(cid), mapping=fields)
                lock.release()
        return self._report(run, time.monotonic() - started)

    def _run_batches(
        self,
        run: _Run,
        lock: Lease,
        should_stop: Callable[[], bool],
        on_progress: Callable[[EnqueueProgress], None] | None,
    ) -> None:
        store, campaign = self.store, self.campaign
        cid = campaign.campaign_id
        errors_path = Path(campaign.errors_path)
        totals = [campaign.rows_read, campaign.enqueued, campaign.invalid, campaign.duplicates]
        reader = RowReader(self.path, campaign.kind, file_format=campaign.file_format)
        with contextlib.ExitStack() as stack:
            errors = stack.enter_context(contextlib.closing(ErrorsFile(errors_path)))
            rows = reader.rows(
                offset_bytes=campaign.checkpoint_offset, after_line=campaign.checkpoint_line
            )
            stack.callback(rows.close)
            if errors_path.exists() or campaign.invalid or campaign.duplicates:
                # What was committed, only: a killed run may have written more than that.
                errors.rebuild(store.rejected_entries(cid, max_line=campaign.checkpoint_line))
            while chunk := list(itertools.islice(rows, self.batch_rows)):
                batch = self._sort(chunk)
                self._commit(batch, reader.position_bytes, reader.lines_read)
                errors.write(batch.rejected)
                errors.flush()
                run.rows += batch.rows_read
                counted = (batch.rows_read, len(batch.calls), batch.invalid, batch.duplicates)
                totals = [total + n for total, n in zip(totals, counted, strict=True)]
                if on_progress is not None:
                    rows_read, enqueued, invalid, duplicates = totals
                    on_progress(
                        EnqueueProgress(
                            rows_read=rows_read,
                            enqueued=enqueued,
                            invalid=invalid,
                            duplicates=duplicates,
                            line=reader.lines_read,
                            position_bytes=reader.position_bytes,
                            size_bytes=reader.size_bytes,
                        )
                    )
                if not lock.renew():
                    raise CampaignError(f"campaign {cid}: lost the enqueue lock; resume it")
                if store.status_of(cid) is CampaignStatus.CANCELLED:
                    # A batch committed while the cancel emptied the backlog is ended too.
                    store.end_backlog(cid, CallState.CANCELLED, "campaign cancelled")
                    run.stopped_because = "the campaign was cancelled"
                    return
                if should_stop():
                    run.stopped_because = "interrupted"
                    return
        run.state = EnqueueState.COMPLETE

    def _report(self, run: _Run, elapsed_s: float) -> EnqueueReport:
        campaign = self.store.get(self.campaign.campaign_id)
        errors_path = Path(campaign.errors_path)
        return EnqueueReport(
            campaign_id=campaign.campaign_id,
            state=run.state,
            rows_read=campaign.rows_read,
            enqueued=campaign.enqueued,
            invalid=campaign.invalid,
            duplicates=campaign.duplicates,
            errors_path=str(errors_path) if errors_path.exists() else None,
            elapsed_s=elapsed_s,
            rows_this_run=run.rows,
            stopped_because=run.stopped_because,
        )

    def _sort(self, chunk: list[SourceRow]) -> _Batch:
        """Validate the rows and find duplicate callees; nothing is written yet."""
        batch = _Batch(rows_read=len(chunk))
        cid = self.campaign.campaign_id
        valid: list[tuple[int, str, dict[str, Any], str]] = []
        for row in chunk:
            if row.problem is not None:
                batch.invalid += 1
                batch.rejected.append((row.line, row.problem, RowOutcome.INVALID))
                continue
            try:
                model = self.validator.validate(row.fields)
            except InvalidInstruction as exc:
                batch.invalid += 1
                batch.rejected.extend((row.line, e, RowOutcome.INVALID) for e in exc.errors)
                continue
            refusal = self.rules.country_error(model.callee)
            if refusal is not None:
                batch.refuse(row.line, COUNTRY, refusal)
                continue
            valid.append(
                (row.line, instruction_id_for(cid, row.line), model.to_payload(), model.callee)
            )
        valid = self._not_suppressed(batch, valid)
        if not valid:
            return batch
        owners = self.guards.claim_callees(
            cid, [(self._callee_hash(callee), line) for line, _, _, callee in valid]
        )
        dials_duplicates = self.campaign.allow_duplicates
        for (line, iid, payload, callee), owner in zip(valid, owners, strict=True):
            if owner != line:
                batch.duplicates += 1
                if dials_duplicates:
                    rule = f"duplicate of line {owner}; dialed again (allow duplicates)"
                    outcome = RowOutcome.DUPLICATE_DIALED
                else:
                    rule = f"duplicate of line {owner}; not dialed again (one call per number)"
                    outcome = RowOutcome.DUPLICATE
                batch.rejected.append(
                    (line, FieldError("callee", rule, mask_number(callee)), outcome)
                )
                if not dials_duplicates:
                    continue
            known = facts(self.store.runtime, callee)
            if self.by_zone and not known.zone_group:
                batch.refuse(line, WINDOW, FieldError("callee", NO_ZONE, mask_number(callee)))
                continue
            batch.calls.append((line, iid, payload, known))
        return batch

    def _not_suppressed(
        self, batch: _Batch, valid: list[tuple[int, str, dict[str, Any], str]]
    ) -> list[tuple[int, str, dict[str, Any], str]]:
        """The rows whose number is not on the suppression list (one round trip)."""
        hashes = [number_hash(self.store.runtime, callee) for _, _, _, callee in valid]
        found = self.store.redis.hmget(self.store.keys.suppressed(), hashes) if hashes else []
        kept = []
        for row, entry in zip(valid, found, strict=True):
            if entry is None:
                kept.append(row)
                continue
            error = FieldError(
                "callee", f"{SUPPRESSED}: {ON_SUPPRESSION_LIST}", mask_number(row[3])
            )
            batch.refuse(row[0], SUPPRESSED, error)
        return kept

    def _commit(self, batch: _Batch, offset_bytes: int, last_line: int) -> None:
        """One transaction: records, indexes, counters and the checkpoint, all or nothing."""
        store, campaign = self.store, self.campaign
        cid = campaign.campaign_id
        pipe = store.redis.pipeline(transaction=True)
        groups: set[str] = set()
        for line, iid, payload, known in batch.calls:
            group = known.zone_group if self.by_zone else ANY_ZONE
            extra = {
                "campaign_line": str(line),
                "zone_group": group,
                "number_hash": known.number_hash,
            }
            if campaign.until_ms:
                extra["expires_at"] = str(campaign.until_ms)
            store.ledger.create(
                iid,
                campaign.kind,
                payload,
                campaign_id=cid,
                extra=extra,
                # Due from the campaign's start, in file order: the line is the fraction.
                backlog=(store.backlog_key(cid, group), campaign.created_at_ms + line / 1000),
                pipeline=pipe,
            )
            groups.add(group)
        if batch.calls:
            pipe.zadd(store.key(cid, "calls"), {iid: line for line, iid, _, _ in batch.calls})
            pipe.sadd(store.key(cid, "groups"), *groups)
            pipe.sadd(store.keys.active_campaigns(), cid)
            # New calls wait in the backlog: the pacer looks at once.
            pipe.lpush(store.keys.pacer_wake(), "1")
            pipe.ltrim(store.keys.pacer_wake(), 0, 0)
        if batch.rejected:
            members = {
                json.dumps([line, e.field, e.rule, e.value, outcome.value]): line
                for line, e, outcome in batch.rejected
            }
            pipe.zadd(store.key(cid, "rejected"), members)
        key = store.key(cid)
        pipe.hincrby(key, "rows_read", batch.rows_read)
        pipe.hincrby(key, "enqueued", len(batch.calls))
        pipe.hincrby(key, "invalid", batch.invalid)
        pipe.hincrby(key, "duplicates", batch.duplicates)
        pipe.hincrby(key, "refused", sum(batch.refused.values()))
        for rule, count in batch.refused.items():
            pipe.hincrby(store.key(cid, "counts"), f"rule:{rule}", count)
            pipe.hincrby(store.keys.refusals(), rule, count)
        pipe.hset(key, mapping={"checkpoint_line": last_line, "checkpoint_offset": offset_bytes})
        store.touch(cid, pipe)
        results = pipe.execute()
        existing = sum(1 for created in results[: len(batch.calls)] if not created)
        if existing:
            logger.warning("campaign %s: %d calls were already in the ledger", cid, existing)


def start_campaign(
    runtime: Runtime,
    path: Path,
    kind: str,
    *,
    template: dict[str, Any] | Path | None = None,
    name: str | None = None,
    rate: str | None = None,
    allow_duplicates: bool = False,
    errors_path: Path | None = None,
    window: str | None = None,
    days: str | None = None,
    until_ms: int | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[EnqueueProgress], None] | None = None,
) -> EnqueueReport:
    """Create a campaign from ``path`` and enqueue it: what ``cmvoice campaign start`` runs."""
    store = CampaignStore(runtime)
    campaign = store.create(
        kind,
        path,
        template=template,
        name=name,
        rate=rate,
        allow_duplicates=allow_duplicates,
        errors_path=errors_path,
        window=window,
        days=days,
        until_ms=until_ms,
    )
    enqueuer = CampaignEnqueuer(store, campaign, batch_rows=batch_rows)
    return enqueuer.run(should_stop=should_stop, on_progress=on_progress)
