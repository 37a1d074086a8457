"""Campaigns end to end: a file -> the ledger -> a real worker -> the simulator -> the report.

Real Redis, a real Celery worker thread, the simulator and the receiver over HTTP. Times that
must not be crossed (no POST after a cancel or a pause) are compared on Redis's clock: the
status change and the ledger's "about to POST" mark are both Lua scripts reading it.
"""

from __future__ import annotations

import base64
import csv
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from cmvoice.calls import CallState
from cmvoice.campaigns import control
from cmvoice.campaigns.enqueue import start_campaign
from cmvoice.campaigns.report import REPORT_COLUMNS
from cmvoice.messages import DISPATCH_QUEUE, DISPATCH_TASK
from cmvoice.publishing import DispatchPublisher, Lane, dispatch_envelope
from cmvoice.runtime import get_runtime
from cmvoice.worker import app
from tests.support.campaigns import (
    counts,
    notification_campaign,
    numbered_callees,
    one_call_released,
    report_of,
    sent_at_of_placed_calls,
    store,
    write_csv,
)
from tests.support.stack import CALLER, Stack, wait_for

DTMF_TEMPLATE = {
    "caller": CALLER,
    "prompt": "Please key in your four-digit customer number.",
    "min-digits": 4,
    "max-digits": 4,
    "max-attempts": 2,
}


@pytest.fixture(autouse=True)
def _errors_files_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Errors files default to the working directory: keep them out of the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.rabbitmq
def test_good_rows_are_dialed_once_and_bad_and_duplicate_rows_are_reported(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given a DTMF campaign file with good rows, three kinds of bad rows and a duplicate
    path = write_csv(
        tmp_path / "dtmf.csv",
        ["callee", "prompt", "min_digits"],
        [
            ["+31612345670", "", ""],  # line 2: good
            ["0612345678", "", ""],  # line 3: a national number
            ["+31612345671", "x" * 1001, ""],  # line 4: prompt too long
            ["+31612345672", "", "6"],  # line 5: min-digits > max-digits (4)
            ["+31612345673", "Key in the code from your letter.", ""],  # line 6: good
            ["0031612345670", "", ""],  # line 7: the number of line 2 again
            ["+31612345674", "", ""],  # line 8: good
        ],
    )
    errors_path = tmp_path / "errors.csv"

    # When the campaign is started and its calls are placed
    report = start_campaign(
        get_runtime(), path, "dtmf", template=DTMF_TEMPLATE, errors_path=errors_path
    )
    wait_for(lambda: counts(report.campaign_id) == {"FINISHED": 3})

    # Then the errors file names each bad row: line, field and rule
    errors = list(csv.DictReader(errors_path.open(encoding="utf-8")))
    assert [(e["line"], e["field"]) for e in errors] == [
        ("3", "callee"),
        ("4", "prompt"),
        ("5", "min-digits"),
        ("7", "callee"),
    ]
    assert "international number" in errors[0]["rule"]
    assert "1000 characters" in errors[1]["rule"]
    assert "<= max-digits (4)" in errors[2]["rule"]
    assert "duplicate of line 2" in errors[3]["rule"]
    assert "0612345678" not in errors_path.read_text(), "values are masked"
    assert (report.rows_read, report.enqueued, report.invalid, report.duplicates) == (7, 3, 3, 1)

    # And every good row was dialed exactly once, and nothing else
    placed = Counter(call["callee"] for call in stack.calls())
    assert placed == {"+31612345670": 1, "+31612345673": 1, "+31612345674": 1}

    # And the report lists every row of the file with its outcome
    rows = report_of(report.campaign_id)
    assert [(r["line"], r["state"], r["result_code"]) for r in rows] == [
        ("2", "FINISHED", "10"),
        ("3", "INVALID", ""),
        ("4", "INVALID", ""),
        ("5", "INVALID", ""),
        ("6", "FINISHED", "10"),
        ("7", "DUPLICATE", ""),
        ("8", "FINISHED", "10"),
    ]
    finished = rows[0]
    assert finished["callee"] == "+31******670"
    assert finished["digits"] == "1234"
    assert finished["attempts"] == "1"
    assert finished["started_on"]
    assert finished["finished_on"]
    assert list(rows[0]) == list(REPORT_COLUMNS)


@pytest.mark.rabbitmq
def test_the_report_follows_a_redialed_row_to_its_last_attempt(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given a number that does not answer the first time (code 9, redialed), then does
    stack.make_runtime(redial_max_attempts=3)
    stack.scenario("+31612345620", {"code": 9}, {"code": 10})
    path = write_csv(tmp_path / "calls.csv", ["callee"], [["+31612345620"]])

    # When its campaign runs
    report = start_campaign(
        get_runtime(), path, "notification", template={"caller": CALLER, "prompt": "Hello."}
    )
    wait_for(lambda: counts(report.campaign_id) == {"FINISHED": 2})

    # Then the counters count both attempts, and the report one row: the last attempt
    progress = store().progress(report.campaign_id)
    assert (progress.attempts, progress.redials, progress.codes) == (2, 1, {"9": 1, "10": 1})
    [row] = report_of(report.campaign_id)
    assert (row["state"], row["attempts"], row["result_code"]) == ("FINISHED", "2", "10")


@pytest.mark.rabbitmq
def test_cancel_halfway_sends_no_queued_call_and_the_counters_add_up(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given a slow campaign (5 calls a second) of 20 rows, a few calls in
    report = notification_campaign(tmp_path, 20, rate="5/s")
    wait_for(lambda: len(stack.calls()) >= 4)

    # When it is cancelled
    cancelled, cancelled_at_ms = control.cancel(store(), report.campaign_id)

    # Then no call is POSTed after the cancel, the rest are CANCELLED, the placed ones finish
    wait_for(lambda: store().progress(report.campaign_id).active == 0)
    time.sleep(0.5)  # anything still on its way would show up now
    assert all(sent_at <= cancelled_at_ms for sent_at in sent_at_of_placed_calls(stack))
    final = counts(report.campaign_id)
    placed = len(stack.calls())
    assert final.get("FINISHED", 0) == placed
    assert final.get("FINISHED", 0) + final.get("CANCELLED", 0) + final.get("FAILED", 0) == 20
    assert final["CANCELLED"] >= 10
    # Queued ones by the cancel itself; claimed ones (waiting for the rate) by dispatch.
    assert 0 < cancelled <= final["CANCELLED"]
    assert store().progress(report.campaign_id).phase == "cancelled"
    assert {r["state"] for r in report_of(report.campaign_id)} == {"FINISHED", "CANCELLED"}


@pytest.mark.rabbitmq
def test_pause_sends_nothing_until_resume_then_every_call_finishes_once(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given a campaign of 20 rows at 10 calls a second, a few calls in
    report = notification_campaign(tmp_path, 20, rate="10/s")
    cid = report.campaign_id
    wait_for(lambda: len(stack.calls()) >= 3)

    # When it is paused for a second
    paused_at_ms = control.pause(store(), cid)
    time.sleep(1.0)
    placed_while_paused = len(stack.calls())

    # Then nothing was POSTed after the pause
    assert all(sent_at <= paused_at_ms for sent_at in sent_at_of_placed_calls(stack))
    assert store().progress(cid).phase == "paused"

    # When it is resumed, then the calls the pause held are released, and every call
    # finishes, each number dialed exactly once
    assert control.resume(store(), cid) > 0
    wait_for(lambda: counts(cid) == {"FINISHED": 20}, timeout_s=20)
    assert placed_while_paused < 20
    assert Counter(call["callee"] for call in stack.calls()) == dict.fromkeys(
        numbered_callees(20), 1
    )
    assert max(store().progress(cid).calls_per_minute, 0) > 0


@pytest.mark.rabbitmq
def test_a_call_released_just_before_a_pause_waits_in_the_backlog_until_resume(
    stack: Stack, tmp_path: Path
) -> None:
    # Given a campaign whose only call the pacer released to the broker, with no worker yet
    campaign, pacer = one_call_released(tmp_path)
    campaigns = store()

    # When the campaign is paused before a worker takes that call, and a worker then runs it
    control.pause(campaigns, campaign.campaign_id)
    from cmvoice.tasks.dispatch import dispatch_instruction

    [iid] = [iid for chunk in campaigns.call_chunks(campaign.campaign_id) for iid, _ in chunk]
    outcome = dispatch_instruction(get_runtime(), iid)

    # Then nothing is sent: the call is back in the backlog, waiting for the campaign
    assert outcome == "waiting: campaign paused"
    assert stack.calls() == []
    assert campaigns.backlog(campaign.campaign_id, campaigns.ledger.server_time_ms()).total == 1

    # And after resume the pacer releases it again, and it is dispatched once
    control.resume(campaigns, campaign.campaign_id)
    assert pacer.step().released_campaign == 1
    assert dispatch_instruction(get_runtime(), iid).startswith("placed call ")
    assert len(stack.calls()) == 1


@pytest.mark.redis_broker
def test_dispatch_messages_published_in_batches_are_the_ones_send_task_publishes(
    stack: Stack,
) -> None:
    # Given one message published by Celery's send_task and one by the batch publisher
    client = redis.Redis.from_url(stack.redis_url)
    app.send_task(DISPATCH_TASK, args=["call-1"], queue=DISPATCH_QUEUE)
    with DispatchPublisher() as publisher:
        publisher.publish(["call-1"], Lane.CAMPAIGN)
    # (and one the pacer's Lua step pushes itself)
    client.lpush(DISPATCH_QUEUE, dispatch_envelope("call-1", Lane.CAMPAIGN))

    # When they are read back from the dispatch queue
    celery_message, batch_message, pacer_message = (
        json.loads(raw) for raw in reversed(client.lrange(DISPATCH_QUEUE, 0, -1))
    )

    # Then they differ only in their ids and in what the sender chose not to ask for
    for message in (celery_message, batch_message, pacer_message):
        assert json.loads(base64.b64decode(message["body"]))[0] == ["call-1"]
    for ours in (batch_message, pacer_message):
        assert ours.keys() == celery_message.keys()
        assert ours["headers"].keys() == celery_message["headers"].keys()
        assert ours["properties"].keys() == celery_message["properties"].keys()
        varying = {"id", "root_id", "argsrepr", "ignore_result"}
        for name, value in celery_message["headers"].items():
            if name not in varying:
                assert ours["headers"][name] == value, name
        same_properties = ("delivery_info", "delivery_mode", "priority", "body_encoding")
        for name in same_properties:
            assert ours["properties"][name] == celery_message["properties"][name], name
    client.close()


def test_every_state_of_a_finished_campaign_shows_in_its_status(
    stack: Stack, worker: Any, tmp_path: Path
) -> None:
    report = notification_campaign(tmp_path, 3, rate="100/s")

    wait_for(lambda: store().progress(report.campaign_id).phase == "finished")

    status = store().progress(report.campaign_id).to_dict()
    assert status["states"] == {CallState.FINISHED.value: 3}
    assert status["result_codes"] == {"10": 3}
    assert status["eta_s"] == 0
    assert [c.campaign_id for c in store().list_campaigns()] == [report.campaign_id]
