"""``cmvoice call status --json``, run as a user runs it: typed JSON a script can use as it is."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from cmvoice.calls import CallState
from cmvoice.producer import enqueue
from cmvoice.runtime import get_runtime
from tests.support.stack import CALLER, Stack, wait_for
from tests.support.workers import CMVOICE, worker_env


def call_status_json(redis_url: str, instruction_id: str) -> Any:
    result = subprocess.run(
        [CMVOICE, "call", "status", instruction_id, "--json"],
        env=worker_env({"broker_url": redis_url}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_call_status_json_gives_numbers_as_numbers_and_digits_as_text(
    stack: Stack, worker: Any
) -> None:
    # Given a DTMF call rejected once, then answered on its redial with a PIN starting with 0
    stack.make_runtime(redial_max_attempts=3)
    callee = "+31612345677"
    stack.scenario(callee, {"code": 12}, {"code": 10, "keys": ["0123"]})
    ticket = enqueue(
        {"callee": callee, "caller": CALLER, "prompt": "Enter your PIN.", "min-digits": 4,
         "max-digits": 4, "max-attempts": 1},
    )  # fmt: skip
    ledger = get_runtime().ledger

    def redial_finished() -> bool:
        first = ledger.get(ticket.instruction_id)
        redial = ledger.get(first.get("next_id")) if first and first.get("next_id") else None
        return redial is not None and redial.state is CallState.FINISHED

    wait_for(redial_finished)

    # When the operator asks for its status as JSON
    status = call_status_json(stack.redis_url, ticket.instruction_id)

    # Then counts and codes are JSON numbers, the digits stay text (the leading 0 kept)
    first, redial = status["attempts"]
    assert (status["result_code"], status["posts"], status["error_attempts"]) == (12, 1, 0)
    assert (redial["result_code"], redial["attempt_no"], redial["posts"]) == (10, 2, 1)
    assert redial["digits"] == "0123"
    assert first["instruction_id"] == ticket.instruction_id
    assert status["callee"] == "+31******677"
