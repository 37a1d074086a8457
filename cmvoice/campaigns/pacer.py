"""The pacer: moves waiting calls into the broker only as fast as the account allows.

Campaign calls wait in their campaign's backlog, and interactive calls that found no slot or
rate turn wait in the waiting room, all in Redis. One pacer at a time (the holder of a lease in
Redis, a thread in every ``cmvoice worker``) releases them, and the interactive calls the
schedule holds (retries, redials) once they are due: the waiting interactive calls first,
then the campaigns' calls, shared fairly between running campaigns, each within its own rate
and calling window, never more than ``CMVOICE_PACER_LEAD`` seconds of the account's rate ahead
of now and never more than the free concurrency slots (campaign calls never more than their
share of them: CMVOICE_INTERACTIVE_SLOTS stay free for OTP calls). See docs/architecture.md,
"Pacing", for why a lease-held loop and not beat.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from cmvoice import lua
from cmvoice.calls import CallState
from cmvoice.campaigns.model import CampaignStatus
from cmvoice.campaigns.plan import (
    Budget,
    campaign_room,
    open_groups,
    plan_budget,
    rate_refill_s,
    share_fairly,
)
from cmvoice.campaigns.store import CampaignStore
from cmvoice.config import parse_rate
from cmvoice.lease import Lease
from cmvoice.publishing import DispatchPublisher, Lane, dispatch_envelope, publish_dispatch
from cmvoice.replies import as_int, as_text
from cmvoice.rules.windows import CallingPolicy
from cmvoice.runtime import Runtime

logger = logging.getLogger(__name__)

#: Calls released in one step at most: one Lua script moves them, so it must stay short.
DEFAULT_MAX_BATCH = 200
#: Seconds a pacer lease lives unless renewed: a pacer killed mid-step is replaced this fast.
DEFAULT_LEASE_TTL_S = 5.0
#: Longest sleep between two steps when nothing wakes the pacer (it renews its lease).
MAX_IDLE_S = 1.0
#: Shortest sleep between two steps: a pacer that has nothing to do now never spins.
MIN_SLEEP_S = 0.005

#: (source kind, source key, instruction id, lane, campaign id, campaign interval in µs)
_Candidate = tuple[str, str, str, Lane, str, str]


@dataclass
class StepReport:
    """What one step did, and when the next one is due."""

    released_interactive: int = 0
    released_campaign: int = 0
    scheduled: int = 0
    expired: int = 0
    next_step_s: float = MAX_IDLE_S
    slot_bound: bool = False
    by_campaign: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _CampaignPace:
    """A running campaign as one step sees it."""

    campaign_id: str
    interval_us: int
    tat_us: int
    #: Backlog groups whose calling window is open now, and when the next closed one opens.
    open_groups: list[str]
    next_opening: datetime | None


class Pacer:
    """Releases waiting calls as the account's rate and slots allow (see the module docstring).

    Args:
        runtime: settings, Redis and the ledger.
        lead_s: how far ahead of now the account's rate may be taken by released calls.
        lease: the lease that makes this the one running pacer (tests may share one).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        lead_s: float | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        lease: Lease | None = None,
    ) -> None:
        self._lead_s = lead_s
        self.max_batch = max_batch
        self._given_lease = lease
        # One token for this pacer's life: a rebind (a new runtime) keeps the lease it holds.
        self._token = secrets.token_hex(8)
        self._turn = 0
        self._waiter: redis.Redis | None = None
        self.bind(runtime)

    def bind(self, runtime: Runtime) -> None:
        """Work with ``runtime`` (its settings, Redis and keys) from the next step on."""
        if self._waiter is not None:
            self._waiter.close()
        self.runtime = runtime
        self.settings = runtime.settings
        self.redis = runtime.redis
        self.keys = runtime.keys
        self.store = CampaignStore(runtime)
        self.lead_us = int((self._lead_s or self.settings.pacer_lead) * 1_000_000)
        self.interval_us = max(1, round(self.settings.rate_limit.interval_s * 1_000_000))
        self.lease = self._given_lease or Lease(
            runtime.redis, runtime.keys.pacer_lease(), DEFAULT_LEASE_TTL_S, token=self._token
        )
        self._release = lua.load(runtime.redis, "release")
        self._srem_if_drained = lua.load(runtime.redis, "srem_if_drained")
        # Its own connection to wait on: a blocking pop holds it, and the runtime's may be
        # closed by whoever replaces the runtime.
        self._waiter = redis.Redis.from_url(
            self.settings.effective_redis_url, socket_timeout=MAX_IDLE_S + 10
        )

    # -- one step
    def step(self) -> StepReport:
        """Release what may go now; returns what was done and when to look again."""
        report = StepReport()
        # Interactive calls due from the schedule (retries, redials, a calling window that
        # opened, an expiry) go to their lane now; their claim applies the limits.
        due = self.runtime.schedule.pop_due(self.max_batch)
        if due:
            publish_dispatch(due, lane=Lane.INTERACTIVE)
            report.scheduled += len(due)
        snapshot = self._snapshot()
        now_us = snapshot["now_us"]
        campaigns = self._campaigns(snapshot["active"], now_us, report)
        budget = plan_budget(
            now_us=now_us,
            tat_us=snapshot["tat"],
            interval_us=self.interval_us,
            lead_us=self.lead_us,
            slot_limit=self.settings.max_concurrent_calls,
            slots_in_use=snapshot["slots"],
            released=snapshot["released"],
            campaign_slot_limit=self.settings.campaign_slot_limit,
            campaign_slots_in_use=snapshot["campaign_slots"],
        )
        calls = min(budget.calls, self.max_batch)
        candidates: list[_Candidate] = []
        if calls and snapshot["waiting"]:
            waiting = self.keys.interactive_waiting()
            for raw in self.redis.lrange(waiting, 0, calls - 1):
                candidates.append(("l", waiting, as_text(raw), Lane.INTERACTIVE, "", ""))
        # Campaign calls within their share of the slots: the rest stay free for OTP calls.
        campaign_calls = min(budget.campaign_calls(len(candidates)), calls - len(candidates))
        if campaign_calls > 0 and campaigns:
            candidates += self._campaign_candidates(campaigns, campaign_calls, now_us)
        released = set(self._release_calls(candidates)) if candidates else set()
        for _, _, iid, lane, campaign_id, _ in candidates:
            if iid not in released:
                continue
            if lane is Lane.INTERACTIVE:
                report.released_interactive += 1
            else:
                report.released_campaign += 1
                report.by_campaign[campaign_id] += 1
        for pace in campaigns:  # a campaign with nothing left leaves the round
            keys = [self.keys.active_campaigns(), self.keys.campaign(pace.campaign_id, "groups")]
            self._srem_if_drained(keys=keys, args=[pace.campaign_id, self.keys.prefix])
        # Waiting for a slot (not the rate): a slot freed by a callback wakes the pacer.
        report.slot_bound = budget.slot_bound(
            interactive=report.released_interactive,
            campaign=report.released_campaign,
            interactive_left=snapshot["waiting"] > report.released_interactive,
            campaigns=bool(campaigns),
        )
        report.next_step_s = self._next_step_s(budget, campaigns, snapshot, report)
        return report

    def _snapshot(self) -> dict[str, Any]:
        account = self.runtime.account
        pipe = self.redis.pipeline(transaction=False)
        pipe.time()
        pipe.hget(self.keys.account(account), "tat")
        # Released calls before slots: a claim in between is counted twice, never missed.
        pipe.zcard(self.keys.released())
        # Slots whose lease ran out (a callback CM never sent) are free: a claim clears them.
        # By this host's clock: a skew only moves when a slot 15 minutes old counts as free.
        leased = (int(time.time() * 1000), "+inf")
        pipe.zcount(self.keys.slots(account), *leased)
        pipe.zcount(self.keys.campaign_slots(account), *leased)
        pipe.llen(self.keys.interactive_waiting())
        pipe.smembers(self.keys.active_campaigns())
        (seconds, micros), tat, released, slots, campaign_slots, waiting, active = pipe.execute()
        return {
            "now_us": int(seconds) * 1_000_000 + int(micros),
            "tat": as_int(tat),
            "slots": int(slots),
            "campaign_slots": int(campaign_slots),
            "released": int(released),
            "waiting": int(waiting),
            "active": sorted(as_text(campaign_id) for campaign_id in active),
        }

    def _campaigns(
        self, campaign_ids: list[str], now_us: int, report: StepReport
    ) -> list[_CampaignPace]:
        """The running campaigns of the round; ends the backlog of one past its deadline."""
        if not campaign_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for campaign_id in campaign_ids:
            fields = ("status", "rate", "tat", "until", "window", "days")
            pipe.hmget(self.keys.campaign(campaign_id), *fields)
            pipe.smembers(self.keys.campaign(campaign_id, "groups"))
        results = pipe.execute()
        now = datetime.fromtimestamp(now_us / 1_000_000, tz=UTC)
        paces = []
        for index, campaign_id in enumerate(campaign_ids):
            (status, rate, tat, until, window, days) = results[2 * index]
            status_text = as_text(status) if status else ""
            if status_text in ("", CampaignStatus.CANCELLED.value):
                self.redis.srem(self.keys.active_campaigns(), campaign_id)
                continue
            if as_int(until) and now_us // 1000 >= as_int(until):
                report.expired += self._expire(campaign_id)
                continue
            if status_text != CampaignStatus.RUNNING.value:
                continue
            policy = CallingPolicy.parse(
                as_text(window) if window else self.settings.calling_window,
                as_text(days) if days else self.settings.calling_days,
            )
            groups = sorted(as_text(group) for group in results[2 * index + 1])
            opened, next_opening = open_groups(policy, groups, now)
            interval = 0
            if rate:
                interval = max(1, round(parse_rate(as_text(rate)).interval_s * 1_000_000))
            paces.append(_CampaignPace(campaign_id, interval, as_int(tat), opened, next_opening))
        return paces

    def _expire(self, campaign_id: str) -> int:
        """The campaign's deadline passed: its backlog ends EXPIRED, never placed later."""
        expired = self.store.end_backlog(
            campaign_id, CallState.EXPIRED, "not placed before the campaign's deadline"
        )
        self.redis.srem(self.keys.active_campaigns(), campaign_id)
        if expired:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(self.keys.campaign(campaign_id, "counts"), "rule:deadline", expired)
            pipe.hincrby(self.keys.refusals(), "deadline", expired)
            pipe.execute()
            logger.info("campaign %s: deadline passed; %d calls expired", campaign_id, expired)
        return expired

    def _campaign_candidates(
        self, campaigns: list[_CampaignPace], calls: int, now_us: int
    ) -> list[_Candidate]:
        """Calls due now from each campaign's open backlog groups, shared fairly in ``calls``."""
        rooms = [
            campaign_room(
                now_us=now_us,
                tat_us=pace.tat_us,
                interval_us=pace.interval_us,
                lead_us=self.lead_us,
            )
            if pace.interval_us
            else calls
            for pace in campaigns
        ]
        pipe = self.redis.pipeline(transaction=False)
        for pace, room in zip(campaigns, rooms, strict=True):
            for group in pace.open_groups if room else ():
                key = self.keys.backlog(pace.campaign_id, group)
                pipe.zrangebyscore(key, "-inf", now_us // 1000, start=0, num=min(room, calls))
        results = iter(pipe.execute())
        due: list[list[tuple[str, str]]] = []
        for pace, room in zip(campaigns, rooms, strict=True):
            ids: list[tuple[str, str]] = []
            for group in pace.open_groups if room else ():
                key = self.keys.backlog(pace.campaign_id, group)
                ids += [(key, as_text(member)) for member in next(results)]
            due.append(ids[:room])
        start = self._turn % len(due)
        shares = share_fairly(calls, [len(ids) for ids in due], start=start)
        # The round robin goes on where this step's ended: moving on by one campaign per step
        # gave every short step's call to the same campaign when steps alternated in size.
        self._turn = start + sum(shares)
        candidates: list[_Candidate] = []
        for pace, ids, count in zip(campaigns, due, shares, strict=True):
            interval = str(pace.interval_us) if pace.interval_us else ""
            for key, iid in ids[:count]:
                candidates.append(("z", key, iid, Lane.CAMPAIGN, pace.campaign_id, interval))
        return candidates

    def _release_calls(self, candidates: list[_Candidate]) -> list[str]:
        """One atomic step: each call leaves where it waited and gets its message."""
        atomic = self.settings.broker_is_ledger_redis
        args: list[Any] = [self.keys.prefix, self.lease.token]
        for kind, source, iid, lane, campaign_id, interval in candidates:
            envelope = dispatch_envelope(iid, lane) if atomic else b""
            args += [kind, source, iid, lane.queue, envelope, campaign_id, interval]
        keys = [self.keys.pacer_lease(), self.keys.released()]
        released = [as_text(iid) for iid in self._release(keys=keys, args=args)]
        if released and not atomic:
            # Another broker: published after the step. A pacer killed in between leaves the
            # calls in `released`, which the reconciler publishes again (the claim dedupes).
            lanes = {iid: lane for _, _, iid, lane, _, _ in candidates}
            with DispatchPublisher() as publisher:
                for lane in Lane:
                    publisher.publish([iid for iid in released if lanes[iid] is lane], lane)
        return released

    def _next_step_s(
        self,
        budget: Budget,
        campaigns: list[_CampaignPace],
        snapshot: dict[str, Any],
        report: StepReport,
    ) -> float:
        """When there may be something to release: the rate refilled, a call coming due, a
        calling window opening."""
        now_us = snapshot["now_us"]
        if report.slot_bound:
            self.redis.set(self.keys.pacer_slot_bound(), "1", px=int(MAX_IDLE_S * 2000))
            return MAX_IDLE_S
        waits = [MAX_IDLE_S]
        released_now = report.released_campaign + report.released_interactive
        if budget.rate_room <= 0 or released_now:
            # Counting what this step released: their turns are taken too.
            waits.append(
                rate_refill_s(
                    now_us=now_us,
                    tat_us=snapshot["tat"],
                    interval_us=self.interval_us,
                    lead_us=self.lead_us,
                    released=snapshot["released"] + released_now,
                )
            )
        now_ms = now_us // 1000
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrangebyscore(
            self.keys.schedule(), f"({now_ms}", "+inf", start=0, num=1, withscores=True
        )
        for pace in campaigns:
            opening = pace.next_opening
            if opening is not None:
                waits.append(max(opening.timestamp() - now_us / 1_000_000, 0.0))
            released = report.by_campaign.get(pace.campaign_id, 0)
            if pace.interval_us and (released or pace.tat_us > now_us):
                # Its own rate binds: look again when it has room, not a second later (when
                # the account's rate does not bind, nothing else wakes the pacer then).
                waits.append(
                    rate_refill_s(
                        now_us=now_us,
                        tat_us=pace.tat_us,
                        interval_us=pace.interval_us,
                        lead_us=self.lead_us,
                        released=released,
                    )
                )
            for group in pace.open_groups:
                key = self.keys.backlog(pace.campaign_id, group)
                # The first call due later (a redial, a retry): due now ones wait for the rate.
                pipe.zrangebyscore(key, f"({now_ms}", "+inf", start=0, num=1, withscores=True)
        for first in pipe.execute():
            if first:
                waits.append((int(first[0][1]) - now_ms) / 1000)
        return max(MIN_SLEEP_S, min(waits))

    # -- the loop
    def wake(self) -> None:
        """Cut the current wait short (to stop, or because there is work)."""
        with contextlib.suppress(redis.RedisError, OSError, ValueError):
            pipe = self.redis.pipeline(transaction=False)
            pipe.lpush(self.keys.pacer_wake(), "1")
            pipe.ltrim(self.keys.pacer_wake(), 0, 0)
            pipe.execute()

    def run(
        self, stop: threading.Event, runtime_factory: Callable[[], Runtime] | None = None
    ) -> None:
        """Step while holding the lease, until ``stop`` is set; stand by while another holds it.

        ``runtime_factory`` gives the process's current runtime (it may be replaced).
        """
        while not stop.is_set():
            try:
                current = runtime_factory() if runtime_factory else self.runtime
                if current is not self.runtime:
                    self.bind(current)
                if not self.lease.hold():
                    stop.wait(DEFAULT_LEASE_TTL_S / 2)
                    continue
                report = self.step()
                if report.released_campaign or report.released_interactive:
                    logger.debug("pacer: %s", report)
                # Woken early when a slot frees or new work arrives. (A timeout of 0 would
                # block for ever: MIN_SLEEP_S is the floor.)
                timeout = max(min(report.next_step_s, MAX_IDLE_S), MIN_SLEEP_S)
                assert self._waiter is not None
                self._waiter.blpop([self.keys.pacer_wake()], timeout=timeout)
            except (redis.RedisError, OSError, ValueError) as exc:
                # ValueError: redis-py's socket closed under a blocked read (the runtime was
                # replaced and closed); the next step binds the new one.
                logger.warning("pacer: %s; trying again", exc)
                stop.wait(1.0)
            except Exception:
                # A bug must not stop every campaign for good: log it loudly and go on.
                logger.exception("pacer: step failed; trying again in a second")
                stop.wait(1.0)
        with contextlib.suppress(redis.RedisError, OSError):
            self.lease.release()
        if self._waiter is not None:
            self._waiter.close()
