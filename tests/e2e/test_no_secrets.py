"""No secret in transit: broker messages, task events and logs hold ids, never numbers or codes."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import redis

from cmvoice.calls import CallState
from cmvoice.messages import INTERACTIVE_QUEUE
from cmvoice.producer import enqueue
from cmvoice.runtime import get_runtime
from cmvoice.serving import ServerThread
from cmvoice.simulator import SimulatorConfig, create_app
from tests.support.broker import message_text, queue_length, take_messages
from tests.support.stack import CALLER, Stack, wait_for

TOKEN = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
CODE = "Q7X9Z2"
CALLEE = "+31612345673"
PROMPT = "Your login code follows."


def otp_call() -> dict[str, Any]:
    return {
        "callee": CALLEE,
        "caller": CALLER,
        "code": CODE,
        "intro-prompt": PROMPT,
        "intro-prompt-type": "TTS",
    }


def assert_clean(text: str) -> None:
    for secret in (CALLEE, CALLEE[1:], CALLER, CODE, TOKEN, PROMPT):
        assert secret not in text, f"{secret!r} leaked"


@pytest.mark.rabbitmq
def test_the_dispatch_message_on_the_broker_carries_only_the_instruction_id(stack: Stack) -> None:
    # Given no worker consumes, so the message stays on the queue
    ticket = enqueue(otp_call())

    wait_for(lambda: queue_length(INTERACTIVE_QUEUE) == 1, timeout_s=5)
    [message] = take_messages(INTERACTIVE_QUEUE)

    args, kwargs, _ = message["body"]
    assert (args, kwargs) == ([ticket.instruction_id], {})
    assert_clean(message_text(message))


def test_no_task_event_log_line_or_stored_record_holds_a_number_code_or_token(
    stack: Stack,
    worker: Any,
    task_events: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    # Given a CM account whose token is a real-looking secret
    simulator = ServerThread(create_app(SimulatorConfig(tokens=(TOKEN,), time_scale=0.001)))
    with simulator:
        stack.make_runtime(product_token=TOKEN, api_url=simulator.url + "/voiceapi/v2")

        # When an OTP call goes all the way through
        ticket = enqueue(otp_call())
        wait_for(
            lambda: get_runtime().ledger.get(ticket.instruction_id).state is CallState.FINISHED
        )
        wait_for(lambda: any(e.get("type") == "task-succeeded" for e in task_events))

    # Then the task events (what Flower shows) name ids only
    received = [e for e in task_events if e.get("type") == "task-received"]
    assert any(e.get("name") == "cmvoice.dispatch" for e in received)
    dispatches = [e for e in received if e.get("name") == "cmvoice.dispatch"]
    # the only argument shown is the instruction id, whatever the repr's brackets
    assert all(str(e["args"]).strip("[](),'\" ") == ticket.instruction_id for e in dispatches)
    assert_clean(json.dumps(task_events, default=str))
    # and no log line or printed output holds the number, the code, the prompt or the token
    assert "+31******673" in caplog.text, "the worker's log lines were captured, masked"
    assert_clean(caplog.text)
    out, err = capfd.readouterr()
    assert_clean(out + err)
    # and the ledger no longer holds the code
    client = redis.Redis.from_url(stack.redis_url)
    stored = b"".join(
        v for v in client.hgetall(get_runtime().keys.call(ticket.instruction_id)).values()
    )
    client.close()
    assert CODE.encode() not in stored
