"""``campaign start``: stream a file into the ledger and the campaign's backlog, batch by batch.

Each batch is sorted (batches.py: validated in memory, the suppression list and duplicate
callees checked in a round trip each), committed in one MULTI/EXEC (records, the backlog, the
campaign's indexes, counters and the checkpoint: all or nothing), then its errors are appended
to the errors file. Nothing is published: the pacer releases the backlog as the account's rate
and slots allow. A run stopped anywhere leaves a campaign that ``--resume`` continues after its
checkpoint, with the same instruction id for each row, so no row is ever enqueued twice.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from cmvoice.calls import CallState
from cmvoice.campaigns.batches import Batch, BatchSorter
from cmvoice.campaigns.errors_file import ErrorsFile
from cmvoice.campaigns.guards import EnqueueGuards
from cmvoice.campaigns.model import ANY_ZONE, Campaign, CampaignStatus, EnqueueState
from cmvoice.campaigns.plan import campaign_policy
from cmvoice.campaigns.rows import RowReader, fingerprint
from cmvoice.campaigns.store import CampaignStore
from cmvoice.errors import CampaignError
from cmvoice.lease import Lease
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
        self.guards = EnqueueGuards(store)
        # The backlog groups calls by time zones only when a calling window applies to the
        # campaign (it does, unless its window is every hour of every day).
        self.by_zone = not campaign_policy(store.runtime.settings, campaign).always_open
        self.sorter = BatchSorter(store, campaign, self.guards, by_zone=self.by_zone)

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
                batch = self.sorter.sort(chunk)
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

    def _commit(self, batch: Batch, offset_bytes: int, last_line: int) -> None:
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
