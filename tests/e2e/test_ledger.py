"""The call ledger's state machine, against a real Redis."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from cmvoice.calls import CallState, Claim, SendDecision
from cmvoice.ledger import CallLedger
from tests.support.stack import CALLEE, CALLER

PAYLOAD = {"callee": CALLEE, "caller": CALLER, "code": "123abc", "instruction-id": "call-1"}


@pytest.fixture
def ledger(redis_url: str) -> CallLedger:
    return CallLedger(redis.Redis.from_url(redis_url), retention_s=3600)


def claim_of(result: object) -> Claim:
    assert isinstance(result, Claim), result
    return result


def test_a_new_record_is_queued_and_keeps_the_code_out_of_its_payload(ledger: CallLedger) -> None:
    assert ledger.create("call-1", "otp", PAYLOAD, campaign_id="camp")

    record = ledger.get("call-1")
    assert record is not None
    assert record.state is CallState.QUEUED
    assert record.campaign_id == "camp"
    assert "code" not in record.payload
    assert record.payload["callee"] == CALLEE
    assert ledger.ids_in(CallState.QUEUED) == ["call-1"]


def test_creating_the_same_id_twice_keeps_the_first_record(ledger: CallLedger) -> None:
    assert ledger.create("call-1", "otp", PAYLOAD)
    assert not ledger.create("call-1", "notification", {"callee": "+31612345699"})
    record = ledger.get("call-1")
    assert record is not None
    assert record.kind == "otp"


def test_only_one_of_many_concurrent_claims_wins(ledger: CallLedger) -> None:
    ledger.create("call-1", "otp", PAYLOAD)
    results: list[object] = []
    barrier = threading.Barrier(8)

    def contender() -> None:
        barrier.wait()
        results.append(ledger.claim("call-1", lease_s=30))

    threads = [threading.Thread(target=contender) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [r for r in results if isinstance(r, Claim)]
    assert len(winners) == 1
    assert winners[0].code == "123abc"
    assert [r for r in results if not isinstance(r, Claim)] == [CallState.DISPATCHING] * 7


def test_placing_removes_the_otp_code_from_redis(ledger: CallLedger) -> None:
    ledger.create("call-1", "otp", PAYLOAD)
    claim = claim_of(ledger.claim("call-1", lease_s=30))
    assert ledger.mark_sending(claim, lease_s=30) is SendDecision.SENDING

    assert ledger.placed(claim, "6d0f176e-00ac-4de2-a04d-b3f7c895adb0")

    record = ledger.get("call-1")
    assert record is not None
    assert record.state is CallState.PLACED
    assert record.call_id == "6d0f176e-00ac-4de2-a04d-b3f7c895adb0"
    assert not ledger.redis.hexists(ledger.key("call-1"), "code")
    assert b"123abc" not in b"".join(ledger.redis.hgetall(ledger.key("call-1")).values())


def test_a_transition_with_a_stale_claim_token_is_refused(ledger: CallLedger) -> None:
    ledger.create("call-1", "otp", PAYLOAD)
    claim = claim_of(ledger.claim("call-1", lease_s=30))
    stale = Claim(record=claim.record, token="not-the-token", code=None)

    assert ledger.mark_sending(stale, lease_s=30) is SendDecision.LOST
    assert not ledger.placed(stale, "6d0f176e-00ac-4de2-a04d-b3f7c895adb0")
    assert not ledger.release(stale, due_in_s=0)
    record = ledger.get("call-1")
    assert record is not None
    assert record.state is CallState.DISPATCHING


def test_an_expired_lease_can_be_reclaimed_only_if_nothing_was_sent(ledger: CallLedger) -> None:
    ledger.create("a", "otp", PAYLOAD)
    ledger.create("b", "otp", PAYLOAD)
    claim_a = claim_of(ledger.claim("a", lease_s=0.001))
    claim_b = claim_of(ledger.claim("b", lease_s=0.001))
    assert ledger.mark_sending(claim_b, lease_s=0.001) is SendDecision.SENDING
    time.sleep(0.02)

    assert isinstance(ledger.claim("a", lease_s=30), Claim)
    assert ledger.claim("b", lease_s=30) is CallState.DISPATCHING
    assert claim_a.token != claim_b.token


def test_release_requeues_with_a_due_time_and_counts_error_attempts(ledger: CallLedger) -> None:
    ledger.create("call-1", "otp", PAYLOAD)
    claim = claim_of(ledger.claim("call-1", lease_s=30))

    assert ledger.release(claim, due_in_s=5, error="CM answered 503", count_attempt=True)

    record = ledger.get("call-1")
    assert record is not None
    assert record.state is CallState.QUEUED
    assert record.attempts == 1
    assert record.last_error == "CM answered 503"
    assert record.get_int("due_at") >= ledger.server_time_ms() + 4000
    assert ledger.ids_in(CallState.DISPATCHING) == []


def test_cancel_only_touches_queued_calls(ledger: CallLedger) -> None:
    ledger.create("queued", "otp", PAYLOAD)
    ledger.create("busy", "otp", PAYLOAD)
    claim_of(ledger.claim("busy", lease_s=30))

    assert ledger.cancel("queued")
    assert not ledger.cancel("busy")
    queued = ledger.get("queued")
    assert queued is not None
    assert queued.state is CallState.CANCELLED
    assert not ledger.redis.hexists(ledger.key("queued"), "code")


def test_fail_keeps_the_reason_and_deletes_the_code(ledger: CallLedger) -> None:
    ledger.create("call-1", "otp", PAYLOAD)
    claim = claim_of(ledger.claim("call-1", lease_s=30))

    assert ledger.fail("call-1", "CM answered 400: callee invalid", claim=claim)

    record = ledger.get("call-1")
    assert record is not None
    assert record.state is CallState.FAILED
    assert record.last_error == "CM answered 400: callee invalid"
    assert not ledger.redis.hexists(ledger.key("call-1"), "code")


def test_records_expire_after_the_retention(ledger: CallLedger) -> None:
    ledger.create("call-1", "otp", PAYLOAD)
    ttl = ledger.redis.ttl(ledger.key("call-1"))
    assert 0 < ttl <= 3600


def test_campaign_counters_follow_every_transition_atomically(ledger: CallLedger) -> None:
    for n in range(3):
        ledger.create(f"c{n}", "otp", PAYLOAD, campaign_id="camp")
    claim = claim_of(ledger.claim("c0", lease_s=30))
    ledger.mark_sending(claim, lease_s=30)
    ledger.placed(claim, "6d0f176e-00ac-4de2-a04d-b3f7c895adb0")
    ledger.finish("c0", "6d0f176e-00ac-4de2-a04d-b3f7c895adb0", {"result_code": "10"})
    ledger.finish("c0", "6d0f176e-00ac-4de2-a04d-b3f7c895adb0", {"result_code": "10"})
    ledger.cancel("c1")

    counts = {
        k.decode(): int(v)
        for k, v in ledger.redis.hgetall(ledger.campaign_key("camp") + ":counts").items()
    }
    assert {k: v for k, v in counts.items() if v} == {
        "QUEUED": 1,
        "FINISHED": 1,
        "CANCELLED": 1,
        "code:10": 1,
    }


def test_a_paused_or_cancelled_campaign_stops_a_claimed_call_before_it_is_sent(
    ledger: CallLedger,
) -> None:
    ledger.create("p", "otp", PAYLOAD, campaign_id="camp")
    ledger.create("c", "otp", PAYLOAD, campaign_id="camp")
    paused_claim = claim_of(ledger.claim("p", lease_s=30))
    cancelled_claim = claim_of(ledger.claim("c", lease_s=30))

    ledger.redis.hset(ledger.campaign_key("camp"), "status", "paused")
    assert ledger.mark_sending(paused_claim, lease_s=30) is SendDecision.PAUSED
    ledger.redis.hset(ledger.campaign_key("camp"), "status", "cancelled")
    assert ledger.mark_sending(cancelled_claim, lease_s=30) is SendDecision.CANCELLED

    cancelled = ledger.get("c")
    assert cancelled is not None
    assert cancelled.state is CallState.CANCELLED
