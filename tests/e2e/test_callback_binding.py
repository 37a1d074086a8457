"""A callback URL cannot choose outcomes or place calls: callbacks are bound to the call-id CM
gave, the redial is planned only with the FINISHED compare-and-set, and duplicate guards name
the instruction. Each test reproduces a defect a hostile probe found, and shows it refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from cmvoice.calls import CallState, Claim
from cmvoice.ledger import CallLedger
from cmvoice.runtime import get_runtime
from cmvoice.signing import callback_url
from cmvoice.tasks.maintenance import reconcile
from tests.support.callbacks import cm_callback
from tests.support.stack import CALLEE, CALLER, TEST_SECRET, Stack, wait_for

REAL_CALL_ID = "6d0f176e-00ac-4de2-a04d-b3f7c895adb0"
OTHER_REAL_CALL_ID = "0e9d2c5b-2a1f-4d7e-8f43-6a5b4c3d2e10"
MADE_UP_CALL_ID = "11111111-2222-3333-4444-555555555555"

#: The receiver publishes, and the worker takes, through the broker: run on RabbitMQ too.
pytestmark = pytest.mark.rabbitmq


def post_callback(stack: Stack, url_of: str, body: dict[str, Any]) -> requests.Response:
    url = callback_url(stack.receiver_url, url_of, TEST_SECRET)
    return requests.post(url, data=json.dumps(body), timeout=10)


def placed(ledger: CallLedger, instruction_id: str, call_id: str) -> None:
    """A PLACED record with the call-id CM gave, as dispatch leaves it."""
    payload = {"callee": CALLEE, "caller": CALLER, "prompt": "Your parcel arrives today."}
    ledger.create(instruction_id, "notification", payload)
    claim = ledger.claim(instruction_id, 30, send_now=True)
    assert isinstance(claim, Claim)
    ledger.mark_sending(claim, 30)
    assert ledger.placed(claim, call_id)


def rejected(stack: Stack, reason: str) -> float:
    text = requests.get(f"{stack.receiver_url}/metrics", timeout=10).text
    prefix = f'cmvoice_callbacks_rejected_total{{reason="{reason}"}}'
    values = [line.split()[-1] for line in text.splitlines() if line.startswith(prefix)]
    return float(values[0]) if values else 0.0


def test_a_forged_callback_for_a_finished_call_places_no_call(stack: Stack, worker: Any) -> None:
    # Given a call that finished with code 10 (its real callback handled)
    stack.make_runtime(redial_delay=0.05)
    ledger = get_runtime().ledger
    placed(ledger, "finished-1", REAL_CALL_ID)
    assert post_callback(stack, "finished-1", cm_callback("finished-1", REAL_CALL_ID, code=10)).ok
    wait_for(lambda: ledger.get("finished-1").state is CallState.FINISHED)

    # When its correctly signed URL gets code 9 with a made-up call-id
    forged = post_callback(stack, "finished-1", cm_callback("finished-1", MADE_UP_CALL_ID, code=9))

    # Then it is refused (409, counted), no redial record is written, and nothing is dialed
    assert forged.status_code == 409
    assert forged.json()["error"] == "call_id_mismatch"
    assert rejected(stack, "call_id_mismatch") == 1
    record = ledger.get("finished-1")
    assert (record.state, record.get("result_code"), record.get("next_id")) == (
        CallState.FINISHED,
        "10",
        "",
    )
    reconcile(get_runtime())
    assert ledger.count_in(CallState.QUEUED) == 0
    assert stack.calls() == []


def test_a_forged_callback_cannot_overwrite_the_real_outcome(stack: Stack, worker: Any) -> None:
    # Given a PLACED call whose real call-id an attacker learned
    stack.make_runtime(redial_delay=0.05, redial_max_attempts=2)
    ledger = get_runtime().ledger
    placed(ledger, "placed-1", REAL_CALL_ID)

    # When a forged "finished" with a made-up call-id arrives first
    forged = post_callback(stack, "placed-1", cm_callback("placed-1", MADE_UP_CALL_ID, code=10))

    # Then it is refused and the ledger is untouched
    assert forged.status_code == 409
    assert ledger.get("placed-1").state is CallState.PLACED

    # And CM's real callback (not answered, 9) is recorded, and its redial placed
    assert (
        post_callback(stack, "placed-1", cm_callback("placed-1", REAL_CALL_ID, code=9)).status_code
        == 204
    )
    wait_for(lambda: ledger.get("placed-1").state is CallState.FINISHED)
    record = ledger.get("placed-1")
    assert (record.call_id, record.get("result_code")) == (REAL_CALL_ID, "9")
    redial = record.get("next_id")
    assert redial
    wait_for(lambda: ledger.get(redial).state is CallState.FINISHED)
    assert len(stack.calls()) == 1, "the redial, and nothing else, reached CM"


def test_one_calls_url_cannot_silence_another_calls_callback(stack: Stack, worker: Any) -> None:
    # Given two placed calls C and D
    ledger = get_runtime().ledger
    placed(ledger, "call-c", REAL_CALL_ID)
    placed(ledger, "call-d", OTHER_REAL_CALL_ID)

    # When C's signed URL is posted with D's real call-id
    crossed = post_callback(stack, "call-c", cm_callback("call-c", OTHER_REAL_CALL_ID, code=10))

    # Then it is refused: C's record holds another call-id
    assert crossed.status_code == 409

    # And D's genuine callback is not taken for a duplicate: D finishes, C is untouched
    assert post_callback(stack, "call-d", cm_callback("call-d", OTHER_REAL_CALL_ID, code=10)).ok
    wait_for(lambda: ledger.get("call-d").state is CallState.FINISHED)
    assert ledger.get("call-c").state is CallState.PLACED


def unknown(ledger: CallLedger, instruction_id: str) -> None:
    """An UNKNOWN record (the POST's answer was lost): no call-id yet."""
    payload = {"callee": CALLEE, "caller": CALLER, "prompt": "Your parcel arrives today."}
    ledger.create(instruction_id, "notification", payload)
    claim = ledger.claim(instruction_id, 30, send_now=True)
    assert isinstance(claim, Claim)
    ledger.mark_sending(claim, 30)
    assert ledger.unknown(claim, "read timeout")


def test_a_url_that_settles_an_unknown_call_with_anothers_call_id_cannot_silence_that_call(
    stack: Stack, worker: Any
) -> None:
    # Given an UNKNOWN call C (no call-id yet) and a placed call D
    ledger = get_runtime().ledger
    unknown(ledger, "call-c")
    placed(ledger, "call-d", OTHER_REAL_CALL_ID)

    # When C's signed URL is posted with D's real call-id: the first callback settles an
    # UNKNOWN call, as documented, so it is taken
    crossed = post_callback(stack, "call-c", cm_callback("call-c", OTHER_REAL_CALL_ID, code=10))
    assert crossed.status_code == 204
    wait_for(lambda: ledger.get("call-c").state is CallState.FINISHED)

    # Then D's genuine callback is still D's own, not a duplicate of C's: D finishes
    genuine = post_callback(stack, "call-d", cm_callback("call-d", OTHER_REAL_CALL_ID, code=10))
    assert genuine.status_code == 204
    wait_for(lambda: ledger.get("call-d").state is CallState.FINISHED)
    assert ledger.get("call-d").call_id == OTHER_REAL_CALL_ID
    assert rejected(stack, "duplicate") == 0


def test_a_callback_for_a_call_cm_refused_cannot_finish_or_redial_it(
    stack: Stack, worker: Any
) -> None:
    # Given a call CM refused with a 400 (FAILED, never placed, no call-id)
    stack.make_runtime(redial_delay=0.05)
    ledger = get_runtime().ledger
    payload = {"callee": CALLEE, "caller": CALLER, "prompt": "x"}
    ledger.create("refused-1", "notification", payload)
    claim = ledger.claim("refused-1", 30, send_now=True)
    assert isinstance(claim, Claim)
    ledger.fail("refused-1", "CM answered 400", claim=claim)

    # When its signed URL gets a code 9 with any call-id
    post_callback(stack, "refused-1", cm_callback("refused-1", MADE_UP_CALL_ID, code=9))
    reconcile(get_runtime())

    # Then the call stays FAILED and nothing is redialed
    record = ledger.get("refused-1")
    assert (record.state, record.get("next_id")) == (CallState.FAILED, "")
    assert stack.calls() == []
