"""Result handling end to end: redial policy, DTMF digits, outcomes delivered once."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import redis

from cmvoice.calls import CallState
from cmvoice.outcomes import CallOutcome, on_result, remove_hook
from cmvoice.producer import enqueue
from cmvoice.runtime import get_runtime
from tests.support.result_tasks import received_outcomes
from tests.support.stack import CALLER, Stack, wait_for
from tests.support.workers import CMVOICE, worker_env

RESULT_TASK = "tests.record_outcome"


def finals(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in outcomes if o["final"]]


@pytest.mark.rabbitmq
def test_a_number_that_never_answers_is_dialed_max_attempts_times(
    stack: Stack, worker: Any
) -> None:
    # Given a redial policy of three attempts and a number ending in 09 (never answers)
    stack.make_runtime(result_tasks=RESULT_TASK, redial_max_attempts=3, redial_delay=0.05)
    callee = "+31612345609"

    ticket = enqueue({"callee": callee, "caller": CALLER, "prompt": "Please call us back."})

    # Then the user's task gets exactly one final outcome, code 9 on the third attempt
    wait_for(lambda: finals(received_outcomes()))
    final = finals(received_outcomes())
    assert len(final) == 1
    assert final[0]["result_code"] == 9
    assert final[0]["attempt"] == 3
    assert final[0]["root_instruction_id"] == ticket.instruction_id
    assert len([c for c in stack.calls() if c["callee"] == callee]) == 3
    non_final = [o for o in received_outcomes() if not o["final"]]
    assert [o["attempt"] for o in non_final] == [1, 2]
    assert "callee" not in final[0], "outcomes carry no phone number"


@pytest.mark.rabbitmq
def test_a_number_answering_on_the_second_try_ends_with_code_10(stack: Stack, worker: Any) -> None:
    stack.make_runtime(result_tasks=RESULT_TASK, redial_max_attempts=3)
    callee = "+31612345678"
    stack.scenario(callee, {"code": 9}, {"code": 10})

    ticket = enqueue({"callee": callee, "caller": CALLER, "prompt": "Your order shipped."})

    wait_for(lambda: finals(received_outcomes()))
    final = finals(received_outcomes())
    assert [(o["result_code"], o["attempt"]) for o in final] == [(10, 2)]
    assert len([c for c in stack.calls() if c["callee"] == callee]) == 2
    first = get_runtime().ledger.get(ticket.instruction_id)
    assert first is not None
    assert first.get("next_id") == final[0]["instruction_id"]


@pytest.mark.rabbitmq
def test_dtmf_digits_pressed_reach_the_application(stack: Stack, worker: Any) -> None:
    stack.make_runtime(result_tasks=RESULT_TASK)
    stack.scenario("+31612345670", {"code": 10, "keys": ["1", "4321#"]})
    stack.scenario("+31612345671", {"code": 10, "keys": ["1", "99#", "#"]})
    dtmf = {"caller": CALLER, "prompt": "Enter your PIN.", "min-digits": 4, "max-digits": 4}

    valid = enqueue({**dtmf, "callee": "+31612345670", "max-attempts": 2})
    invalid = enqueue({**dtmf, "callee": "+31612345671", "max-attempts": 3})

    wait_for(lambda: len(received_outcomes()) == 2)
    by_id = {o["instruction_id"]: o for o in received_outcomes()}
    assert by_id[valid.instruction_id]["digits"] == "4321"
    assert by_id[invalid.instruction_id]["digits"] == ""
    record = get_runtime().ledger.get(valid.instruction_id)
    assert record is not None
    assert record.get("digits") == "4321"


def test_python_hooks_receive_each_outcome_once(stack: Stack, worker: Any) -> None:
    seen: list[CallOutcome] = []
    hook = on_result(seen.append)
    try:
        ticket = enqueue({"callee": "+31612345677", "caller": CALLER, "prompt": "Hello."})
        wait_for(lambda: seen)
        wait_for(
            lambda: get_runtime().ledger.get(ticket.instruction_id).state is CallState.FINISHED
        )
    finally:
        remove_hook(hook)
    assert [(o.instruction_id, o.result_code, o.final) for o in seen] == [
        (ticket.instruction_id, 10, True)
    ]


def test_call_status_shows_the_whole_attempt_chain_with_masked_numbers(
    stack: Stack, worker: Any
) -> None:
    # Given a call answered on its second attempt
    stack.make_runtime(redial_max_attempts=3)
    stack.scenario("+31612345666", {"code": 12}, {"code": 10})
    ticket = enqueue({"callee": "+31612345666", "caller": CALLER, "prompt": "Hi."})
    wait_for(lambda: len(stack.calls()) == 2)
    wait_for(
        lambda: (
            get_runtime()
            .ledger.get(get_runtime().ledger.get(ticket.instruction_id).get("next_id"))
            .state
            is CallState.FINISHED
        )
    )

    # When the operator asks for its status
    result = subprocess.run(
        [CMVOICE, "call", "status", ticket.instruction_id, "--json"],
        env=worker_env({"broker_url": stack.redis_url}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    # Then both attempts are listed, the number masked
    status = json.loads(result.stdout)
    assert [a["result_code"] for a in status["attempts"]] == [12, 10]
    assert status["callee"] == "+31******666"
    assert "+31612345666" not in result.stdout


@pytest.mark.rabbitmq
def test_with_a_separate_broker_outcomes_are_published_after_the_transition(
    stack: Stack, worker: Any
) -> None:
    # Given a ledger Redis named apart from the broker (as with RabbitMQ as the broker):
    # the outbox cannot be atomic, so the outcome is published after the transition
    ledger_url = stack.redis_url.replace("127.0.0.1", "localhost")
    stack.make_runtime(result_tasks=RESULT_TASK, redis_url=ledger_url)

    ticket = enqueue({"callee": "+31612345644", "caller": CALLER, "prompt": "Hello."})

    wait_for(lambda: received_outcomes())
    assert [(o["instruction_id"], o["final"]) for o in received_outcomes()] == [
        (ticket.instruction_id, True)
    ]


@pytest.mark.rabbitmq
def test_a_calls_messages_leave_no_task_result_in_redis_and_wait_for_none(
    stack: Stack, worker: Any
) -> None:
    # Given an application's result task, and Redis's command counters from now on
    runtime = stack.make_runtime(result_tasks=RESULT_TASK)
    client = redis.Redis.from_url(stack.redis_url)
    client.config_resetstat()

    # When a call goes all the way: dispatch, callback, handle_result, the outcome delivered
    ticket = enqueue({"callee": "+31612345644", "caller": CALLER, "prompt": "Hello."})
    wait_for(received_outcomes)
    wait_for(lambda: client.zcard(runtime.keys.outbox()) == 0)

    # Then no task stored a result (the ledger has the outcome; nobody reads one), and no
    # publisher subscribed to a result it would never wait for
    assert get_runtime().ledger.get(ticket.instruction_id).state is CallState.FINISHED
    assert sorted(client.scan_iter("celery-task-meta-*")) == []
    assert client.info("commandstats").get("cmdstat_subscribe", {}).get("calls", 0) == 0
    client.close()
