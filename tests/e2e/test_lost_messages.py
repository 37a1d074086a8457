"""What the broker lost, the reconciler publishes again: released calls, callbacks, outcomes.

Each test loses one message as a crash would (its queue is emptied before any worker takes
it), runs one reconciler pass, then a worker: the call is finished or its outcome delivered,
once. With Redis as the broker the lost message had been pushed in the ledger's own Lua step;
with RabbitMQ it had been published after it (the RabbitMQ pass runs these too).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from cmvoice.calls import CallState, Claim
from cmvoice.campaigns.enqueue import CampaignEnqueuer
from cmvoice.campaigns.pacer import Pacer
from cmvoice.campaigns.store import CampaignStore
from cmvoice.messages import ALL_QUEUES, DISPATCH_QUEUE, RESULTS_QUEUE
from cmvoice.runtime import Runtime
from cmvoice.signing import callback_url
from cmvoice.tasks.maintenance import reconcile
from cmvoice.tasks.results import handle_event
from cmvoice.worker import app
from tests.support.broker import purge, queue_length
from tests.support.callbacks import cm_callback
from tests.support.result_tasks import processings, received_outcomes
from tests.support.stack import CALLEE, CALLER, TEST_SECRET, Stack, wait_for
from tests.support.workers import thread_worker

pytestmark = pytest.mark.rabbitmq

RESULT_TASK = "tests.record_outcome"
CALL_ID = "0b7f1c52-3c1e-4d7e-9a53-5e0c2f7d9a11"


def lose_the_message_in(queue: str) -> None:
    """Wait until the message is on the broker, then drop it, as a crash would."""
    wait_for(lambda: queue_length(queue) == 1, timeout_s=5)
    purge([queue])


def placed(runtime: Runtime, iid: str) -> None:
    """A call dispatch has POSTed and CM has queued: PLACED under CALL_ID."""
    runtime.ledger.create(iid, "notification", {"callee": CALLEE, "caller": CALLER, "prompt": "x"})
    claim = runtime.ledger.claim(iid, lease_s=30)
    assert isinstance(claim, Claim)
    runtime.ledger.mark_sending(claim, lease_s=30)
    runtime.ledger.placed(claim, CALL_ID)


def test_a_released_campaign_call_whose_message_was_lost_is_published_again_and_placed_once(
    stack: Stack, tmp_path: Path
) -> None:
    # Given a campaign call the pacer released, whose dispatch message was then lost
    runtime = stack.make_runtime(requeue_grace=0.05)
    path = tmp_path / "calls.csv"
    path.write_text("callee\n+31612345620\n", encoding="utf-8")
    campaigns = CampaignStore(runtime)
    campaign = campaigns.create(
        "notification", path, template={"caller": CALLER, "prompt": "Hello."}
    )
    CampaignEnqueuer(campaigns, campaign).run()
    pacer = Pacer(runtime)
    assert pacer.lease.hold()
    assert pacer.step().released_campaign == 1
    [iid] = [iid for chunk in campaigns.call_chunks(campaign.campaign_id) for iid, _ in chunk]
    lose_the_message_in(DISPATCH_QUEUE)
    time.sleep(0.1)  # past the requeue grace

    # When the reconciler runs
    report = reconcile(runtime)

    # Then the call is published again on the campaign lane, and a worker places it once
    assert report.republished == 1
    wait_for(lambda: queue_length(DISPATCH_QUEUE) == 1, timeout_s=5)
    with thread_worker(app, ALL_QUEUES):
        wait_for(lambda: runtime.ledger.get(iid).state is CallState.FINISHED)
    assert [call["instruction-id"] for call in stack.calls()] == [iid]


def test_a_taken_callback_whose_handle_result_was_lost_is_published_again_after_the_grace(
    stack: Stack,
) -> None:
    # Given a placed call whose callback the receiver took, and whose handle_result was lost
    runtime = stack.make_runtime(requeue_grace=0.5)
    placed(runtime, "inbox-1")
    url = callback_url(stack.receiver_url, "inbox-1", TEST_SECRET)
    assert requests.post(url, json=cm_callback("inbox-1", CALL_ID), timeout=10).status_code == 204
    lose_the_message_in(RESULTS_QUEUE)
    assert reconcile(runtime).callbacks_again == 0, "not while the grace lasts"

    # When the grace has passed and the reconciler runs
    time.sleep(0.6)
    report = reconcile(runtime)

    # Then handle_result is published again, and a worker records the callback: FINISHED
    assert report.callbacks_again == 1
    with thread_worker(app, ALL_QUEUES):
        wait_for(lambda: runtime.ledger.get("inbox-1").state is CallState.FINISHED)
    record = runtime.ledger.get("inbox-1")
    assert record is not None
    assert record.get("result_code") == "10"
    assert runtime.redis.zcard(runtime.keys.inbox()) == 0


def test_an_outcome_whose_message_was_lost_is_delivered_again_after_the_outbox_timeout(
    stack: Stack,
) -> None:
    # Given a finished call whose outcome message to the application's task was lost
    runtime = stack.make_runtime(result_tasks=RESULT_TASK, outbox_timeout=0.2)
    placed(runtime, "outbox-1")
    event = {
        k: v for k, v in cm_callback("outbox-1", CALL_ID).items() if k not in ("callee", "caller")
    }
    assert handle_event(runtime, event).startswith("outcome 10")
    lose_the_message_in(runtime.settings.result_queue)
    time.sleep(0.3)  # past the outbox timeout

    # When the reconciler runs
    report = reconcile(runtime)

    # Then the outcome is published again, and the application's task gets it once
    assert report.deliveries_again == 1
    queues = [*ALL_QUEUES, runtime.settings.result_queue]
    with thread_worker(app, queues):
        wait_for(received_outcomes)
        wait_for(lambda: runtime.redis.zcard(runtime.keys.outbox()) == 0)
    assert [(o["instruction_id"], o["result_code"]) for o in received_outcomes()] == [
        ("outbox-1", 10)
    ]
    assert reconcile(runtime).deliveries_again == 0, "confirmed: not published again"


def test_two_copies_of_one_outcome_taken_at_once_are_processed_once(stack: Stack) -> None:
    # Given an outcome published, then published again by the outbox before any worker ran it
    slow_task = "tests.record_outcome_slowly"
    runtime = stack.make_runtime(result_tasks=slow_task, outbox_timeout=2.0)
    placed(runtime, "copies-1")
    event = {
        k: v for k, v in cm_callback("copies-1", CALL_ID).items() if k not in ("callee", "caller")
    }
    assert handle_event(runtime, event).startswith("outcome 10")
    time.sleep(2.1)  # past the outbox timeout
    assert reconcile(runtime).deliveries_again == 1
    wait_for(lambda: queue_length(runtime.settings.result_queue) == 2, timeout_s=5)

    # When a worker with threads to spare takes both copies at once
    queues = [*ALL_QUEUES, runtime.settings.result_queue]
    with thread_worker(app, queues, concurrency=4):
        wait_for(lambda: runtime.redis.zcard(runtime.keys.outbox()) == 0, timeout_s=10)
        wait_for(lambda: queue_length(runtime.settings.result_queue) == 0, timeout_s=10)
        time.sleep(0.7)  # a second run of the function would have ended by now

    # Then the application's function ran once for that outcome
    assert [o["instruction_id"] for o in received_outcomes()] == ["copies-1"]
    assert list(processings().values()) == [1]


def test_an_outbox_timeout_of_zero_still_delivers_each_outcome_once(stack: Stack) -> None:
    # Given deliveries published again at every reconciler pass (CMVOICE_OUTBOX_TIMEOUT=0)
    runtime = stack.make_runtime(result_tasks=RESULT_TASK, outbox_timeout=0)
    placed(runtime, "no-wait-1")
    event = {
        k: v for k, v in cm_callback("no-wait-1", CALL_ID).items() if k not in ("callee", "caller")
    }

    # When the call finishes and a worker runs the application's task
    assert handle_event(runtime, event).startswith("outcome 10")
    queues = [*ALL_QUEUES, runtime.settings.result_queue]
    with thread_worker(app, queues):
        wait_for(lambda: runtime.redis.zcard(runtime.keys.outbox()) == 0, timeout_s=10)

    # Then the outcome was processed, once
    assert [o["instruction_id"] for o in received_outcomes()] == ["no-wait-1"]
