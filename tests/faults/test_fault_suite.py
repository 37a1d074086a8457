"""The fault suite: campaigns through a faulty CM while workers are SIGKILLed, on each broker.

The simulator answers 20% 503, 5% 429 and 2% read timeouts, drops 5% of its callbacks and
sends 5% twice, with a fixed seed (tests/support/fault_run.py). Meanwhile one worker process is
SIGKILLed every few seconds and restarted. On Redis as the broker, 2,000 calls and a Redis
restart (append-only file on); on RabbitMQ, 500 calls (the RabbitMQ pass). At the end every call
must be in a terminal state, none placed twice, the campaign's counters equal to the ledger,
every finished call's outcome processed (none lost), again only where its worker died or Redis
went away before it confirmed, and the report must hold every row.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cmvoice.embedded_redis import EmbeddedRedis, free_port
from cmvoice.keyspace import Keys
from tests.support.fault_run import FaultRun
from tests.support.result_tasks import OUTCOMES_KEY
from tests.support.stack import wait_for

pytestmark = pytest.mark.slow

#: The application's result task of both runs (tests/support/result_tasks.py).
RESULT_TASK = "tests.record_outcome"
#: Deliveries a killed worker lost are published again this soon (seconds).
OUTBOX_TIMEOUT_S = 5


@pytest.fixture
def fault_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(port=free_port(), data_dir=tmp_path / "redis", persistent=True)
    with server:
        yield server


def processings_by_delivery(run: FaultRun) -> dict[str, list[dict[str, Any]]]:
    """Each run of the application's task, by delivery id, in the order they happened."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for raw in run.redis.lrange(OUTCOMES_KEY, 0, -1):
        outcome = json.loads(raw)
        runs.setdefault(outcome["delivery_id"], []).append(outcome)
    return runs


def assert_every_outcome_processed_once(run: FaultRun, ids: list[str], wait_s: float) -> str:
    """Every finished call's outcome processed, and again only where @cmvoice.result_task
    says it may be; returns a summary line."""
    finished = run.finished_ids(ids)

    # A message a killed worker lost (on Redis, kombu pops a message before it records it as
    # unacknowledged; on RabbitMQ, a worker may die between the ledger's step and its publish)
    # is published again: handle_result from the callback inbox, the outcome from the outbox,
    # until the result task confirms it.
    def unprocessed() -> set[str]:
        processed = processings_by_delivery(run).values()
        return finished - {runs[0]["instruction_id"] for runs in processed}

    with contextlib.suppress(AssertionError):
        wait_for(lambda: not unprocessed(), timeout_s=wait_s, interval_s=1.0)
    lost = unprocessed()
    assert not lost, (
        f"{len(lost)} finished calls without an outcome after {run.kills} kills "
        f"(e.g. {sorted(lost)[:3]}); {run.redis.zcard(Keys().outbox())} deliveries unconfirmed"
    )
    # One outcome per finished call, and none for another call
    by_delivery = processings_by_delivery(run)
    per_call = Counter(runs[0]["instruction_id"] for runs in by_delivery.values())
    assert all(n == 1 for n in per_call.values()), per_call.most_common(3)
    assert set(per_call) == finished
    # Processed again only in the window @cmvoice.result_task leaves: between the function
    # and the confirmation its worker died, or Redis went away, so the message ran again.
    # Under load that window is milliseconds wide, and a SIGKILL every 3 s finds it.
    again = {d: runs for d, runs in by_delivery.items() if len(runs) > 1}
    unexplained = {
        d: [(r["worker_pid"], r["at"]) for r in runs]
        for d, runs in again.items()
        if not all(in_result_task_window(run, r) for r in runs[:-1])
    }
    assert not unexplained, (
        f"processed twice, its worker alive and Redis up: {unexplained} "
        f"(dead workers {sorted(run.dead_pids)}, Redis down {run.redis_outages})"
    )
    return (
        f"{len(by_delivery)} of {len(finished)} finished processed, none lost; "
        f"{len(again)} again, their worker dead or Redis away before the confirmation"
    )


def in_result_task_window(run: FaultRun, processing: dict[str, Any]) -> bool:
    """Whether this run of the function may have gone unconfirmed: its worker died later, or
    Redis stopped within seconds of it (the confirmation is the next Redis call)."""
    if processing["worker_pid"] in run.dead_pids:
        return True
    at = float(processing["at"])
    return any(stopped - 2 <= at <= started + 2 for stopped, started in run.redis_outages)


def assert_placed_once_counted_and_reported(
    run: FaultRun, campaign_id: str, ids: list[str], rows: int
) -> None:
    # none placed twice
    twice = {iid: n for iid, n in run.placements().items() if n > 1}
    assert not twice, f"placed more than once: {twice}"
    # the campaign's counters equal the ledger
    counts = run.campaign_counts(campaign_id)
    assert {s: n for s, n in counts.items() if not s.startswith("code:") and n} == run.states(ids)
    # the report accounts for every row
    assert len(run.report_rows(campaign_id)) == rows


def print_summary(
    run: FaultRun, title: str, campaign_id: str, ids: list[str], outcomes: str
) -> None:
    counts = run.campaign_counts(campaign_id)
    stats = run.simulator_stats()
    restarted = dict(run.unexpected_exits)
    print(f"\n{title}, other worker exits restarted by the supervisor: {restarted}")
    print(f"  final states       : {run.states(ids)}")
    print(f"  result codes       : { {k: v for k, v in counts.items() if k.startswith('code:')} }")
    print(f"  CM answered        : {stats['requests']['by-status']}")
    print(f"  faults injected    : {stats['requests'].get('faults-injected')}")
    print(f"  callbacks          : {stats.get('callbacks')}")
    print(f"  placed at CM       : {len(run.placements())} calls, none twice")
    print(f"  outcomes processed : {outcomes}")


def test_a_campaign_through_faults_crashes_and_a_redis_restart_loses_and_repeats_nothing(
    tmp_path: Path, fault_redis: EmbeddedRedis
) -> None:
    rows = 2000
    broker = {"broker_url": fault_redis.url}
    run = FaultRun(tmp_path, broker, result_task=RESULT_TASK, outbox_timeout=OUTBOX_TIMEOUT_S)
    try:
        run.start()
        campaign_id, ids = run.start_campaign(rows)
        run.kill_victim_every()

        # Redis goes down once, mid-campaign, and comes back with its append-only file.
        time.sleep(5)
        run.restart_redis(fault_redis)

        # Then: every call terminal, every outcome processed once, none placed twice
        assert len(ids) == rows
        run.wait_until_terminal(ids, timeout_s=240)
        run.stop_killing()
        outcomes = assert_every_outcome_processed_once(run, ids, wait_s=90)
        assert_placed_once_counted_and_reported(run, campaign_id, ids, rows)
        title = f"fault suite: {rows} calls, {run.kills} worker kills, 1 Redis restart"
        print_summary(run, title, campaign_id, ids, outcomes)
    finally:
        run.stop()


@pytest.mark.rabbitmq
def test_a_campaign_through_faults_and_crashes_on_rabbitmq_loses_and_repeats_nothing(
    tmp_path: Path, fault_redis: EmbeddedRedis, rabbitmq_url: str
) -> None:
    # Given RabbitMQ as the broker and the ledger in its own Redis: a killed worker's messages
    # go back to their queue at once; one a worker died before publishing comes from the
    # ledger (the callback inbox, the outcome outbox)
    rows = 500
    broker = {"broker_url": rabbitmq_url, "redis_url": fault_redis.url}
    run = FaultRun(tmp_path, broker, result_task=RESULT_TASK, outbox_timeout=OUTBOX_TIMEOUT_S)
    try:
        run.start()

        # When a campaign goes through the faulty CM while a worker is SIGKILLed every 3 s
        campaign_id, ids = run.start_campaign(rows)
        run.kill_victim_every()

        # Then every call is terminal, every outcome processed once, none placed twice
        assert len(ids) == rows
        run.wait_until_terminal(ids, timeout_s=120)
        run.stop_killing()
        outcomes = assert_every_outcome_processed_once(run, ids, wait_s=30)
        assert_placed_once_counted_and_reported(run, campaign_id, ids, rows)
        title = f"fault suite on RabbitMQ: {rows} calls, {run.kills} worker kills"
        print_summary(run, title, campaign_id, ids, outcomes)
    finally:
        run.stop()
