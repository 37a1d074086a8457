"""CMVOICE_KEY_PREFIX honoured end to end: a deployment with its own prefix writes every key of
its calls, redials, campaigns, outcomes and limits under that prefix, none under cmvoice's."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from cmvoice.calls import CallState
from cmvoice.keyspace import DEFAULT_KEY_PREFIX
from cmvoice.messages import ALL_QUEUES
from cmvoice.producer import enqueue
from tests.support.campaigns import campaign_of, counts
from tests.support.result_tasks import OUTCOMES_KEY, PROCESSED_KEY, received_outcomes
from tests.support.stack import CALLER, Stack, wait_for

PREFIX = "tenant-b"


def broker_key(key: str, queues: tuple[str, ...]) -> bool:
    """Whether ``key`` is kombu's (its queues, bindings and unacked bookkeeping), not cmvoice's."""
    return key in queues or key.startswith(("_kombu.", "unacked"))


def test_every_key_of_a_deployment_lies_under_its_prefix(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    # Given a deployment with its own key prefix, its calls redialed, its outcomes delivered
    monkeypatch.chdir(tmp_path)  # a campaign's errors file goes to the working directory
    runtime = stack.make_runtime(
        key_prefix=PREFIX,
        result_tasks="tests.record_outcome",
        redial_max_attempts=2,
        redial_delay=0.05,
    )
    # (a worker started with it: its pacer takes its lease under the prefix from the start)
    request.getfixturevalue("worker")

    # When an interactive call is placed, not answered and redialed, and a campaign runs
    ticket = enqueue({"callee": "+31612345609", "caller": CALLER, "prompt": "Hello."})
    report = campaign_of(tmp_path, ["+31612345620", "+31612345621"])
    wait_for(lambda: len([o for o in received_outcomes() if o["final"]]) == 3, timeout_s=20)
    wait_for(lambda: counts(report.campaign_id) == {"FINISHED": 2})
    assert runtime.ledger.get(ticket.instruction_id).state is CallState.FINISHED

    # Then every key in Redis is the deployment's, the broker's or the test's result task's
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    keys = set(client.scan_iter(count=1000))
    queues = (*ALL_QUEUES, runtime.settings.result_queue)
    ours = {key for key in keys if not broker_key(key, queues)} - {OUTCOMES_KEY, PROCESSED_KEY}
    assert {key for key in ours if not key.startswith(f"{PREFIX}:")} == set()
    # and the run wrote the keys of calls, campaigns and limits there, none under cmvoice's
    assert runtime.keys.call(ticket.instruction_id) in ours
    assert runtime.keys.campaign(report.campaign_id) in ours
    assert not [key for key in keys if key.startswith(f"{DEFAULT_KEY_PREFIX}:")]
