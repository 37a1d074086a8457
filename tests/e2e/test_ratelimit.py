"""The account's rate turns and concurrency slots, taken by the dispatch claim, in a real Redis."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace

import redis

from cmvoice.calls import Claim, DispatchLimits, Parked
from cmvoice.ledger import CallLedger
from cmvoice.ratelimit import ConcurrencyLimiter, account_key

PAYLOAD = {"callee": "+31612345678", "caller": "+31761234567", "prompt": "Hello."}


def limits(
    interval_s: float = 0.1, slots: int = 1000, max_wait_s: float = 10, slot_lease_s: float = 60
) -> DispatchLimits:
    return DispatchLimits(
        account_key="t:account",
        slots_key="t:slots",
        interval_s=interval_s,
        slot_limit=slots,
        slot_lease_s=slot_lease_s,
        campaign_slot_limit=slots,
        max_wait_interactive_s=max_wait_s,
        max_wait_campaign_s=max_wait_s,
    )


def ledger_with(redis_url: str, *ids: str) -> CallLedger:
    ledger = CallLedger(redis.Redis.from_url(redis_url))
    for iid in ids:
        ledger.create(iid, "notification", PAYLOAD)
    return ledger


def test_rate_turns_are_spaced_by_the_emission_interval(redis_url: str) -> None:
    ledger = ledger_with(redis_url, *"abcde")

    claims = [ledger.claim(iid, 30, limits=limits(0.1)) for iid in "abcde"]

    # Each call gets the next turn, 100 ms after the previous one (minus the time spent asking).
    waits = [claim.wait_s for claim in claims if isinstance(claim, Claim)]
    assert len(waits) == 5
    assert waits[0] == 0
    for earlier, later in itertools.pairwise(waits):
        assert 0.08 <= later - earlier <= 0.1


def test_a_wait_beyond_the_bound_takes_no_turn_and_the_call_waits_in_redis(redis_url: str) -> None:
    ledger = ledger_with(redis_url, "a", "b", "c")
    assert isinstance(ledger.claim("a", 30, limits=limits(1.0)), Claim)

    refused = ledger.claim("b", 30, limits=limits(1.0, max_wait_s=0.5))

    assert refused == Parked("a turn of the rate limit")
    # Refusing took no turn: the next caller with patience gets the same one.
    accepted = ledger.claim("c", 30, limits=limits(1.0, max_wait_s=2))
    assert isinstance(accepted, Claim)
    assert 0.9 <= accepted.wait_s <= 1.0


def test_two_processes_share_the_account_budget(redis_url: str) -> None:
    one = ledger_with(redis_url, "a", "b", "c")
    two = CallLedger(redis.Redis.from_url(redis_url))

    claims = [
        one.claim("a", 30, limits=limits(0.1)),
        two.claim("b", 30, limits=limits(0.1)),
        one.claim("c", 30, limits=limits(0.1)),
    ]

    waits = sorted(claim.wait_s for claim in claims if isinstance(claim, Claim))
    assert waits[2] >= 0.18


def test_concurrency_slots_are_capped_and_given_back(redis_url: str) -> None:
    ledger = ledger_with(redis_url, "a", "b", "c")
    slots = ConcurrencyLimiter(ledger.redis, "t:slots")

    assert isinstance(ledger.claim("a", 30, limits=limits(0.001, slots=2)), Claim)
    assert isinstance(ledger.claim("b", 30, limits=limits(0.001, slots=2)), Claim)
    assert ledger.claim("c", 30, limits=limits(0.001, slots=2)) == Parked("a concurrency slot")
    assert slots.in_use() == 2

    slots.release("a")
    ledger.redis.hdel(ledger.key("c"), "waiting")  # as the pacer does when it releases c
    assert isinstance(ledger.claim("c", 30, limits=limits(0.001, slots=2)), Claim)
    assert slots.in_use() == 2


def test_a_call_that_holds_its_slot_already_is_not_refused(redis_url: str) -> None:
    ledger = ledger_with(redis_url, "a", "b")
    # a takes the only slot, then its worker is lost before sending (its lease runs out)
    assert isinstance(ledger.claim("a", 0.01, limits=limits(0.001, slots=1)), Claim)
    time.sleep(0.03)

    assert ledger.claim("b", 30, limits=limits(0.001, slots=1)) == Parked("a concurrency slot")
    assert isinstance(ledger.claim("a", 30, limits=limits(0.001, slots=1)), Claim)


def test_an_expired_slot_lease_frees_the_slot(redis_url: str) -> None:
    ledger = ledger_with(redis_url, "crashed", "next")
    one_slot = limits(0.001, slots=1, slot_lease_s=0.01)
    assert isinstance(ledger.claim("crashed", 30, limits=one_slot), Claim)
    time.sleep(0.03)

    assert isinstance(ledger.claim("next", 30, limits=one_slot), Claim)


def test_campaign_calls_hold_only_their_share_and_give_it_back_with_the_slot(
    redis_url: str,
) -> None:
    # Given 3 slots of which campaign calls may hold 1, and three campaign calls and an
    # interactive one
    ledger = ledger_with(redis_url, "otp")
    for iid in ("c1", "c2", "c3"):
        ledger.create(iid, "notification", PAYLOAD, campaign_id="camp")
    shared = replace(limits(0.001, slots=3), campaign_slot_limit=1)
    slots = ConcurrencyLimiter(ledger.redis, "t:slots")

    # When the first campaign call takes the campaigns' slot
    assert isinstance(ledger.claim("c1", 30, limits=shared), Claim)

    # Then the second waits for one, though the account has two free: they are kept for
    # interactive calls, and one of those takes one
    assert ledger.claim("c2", 30, limits=shared) == Parked("a concurrency slot for campaigns")
    assert isinstance(ledger.claim("otp", 30, limits=shared), Claim)
    assert slots.in_use() == 2
    assert ledger.redis.zrange("t:slots:campaign", 0, -1) == [b"c1"]

    # When the campaign call's slot is given back, the campaigns' one is free again
    slots.release("c1")
    assert ledger.redis.zcard("t:slots:campaign") == 0
    assert isinstance(ledger.claim("c3", 30, limits=shared), Claim)


def test_a_lapsed_campaign_slot_is_taken_back_with_the_accounts(redis_url: str) -> None:
    # Given one slot, taken by a campaign call whose end never came
    ledger = ledger_with(redis_url, "otp")
    ledger.create("crashed", "notification", PAYLOAD, campaign_id="camp")
    lapsing = replace(limits(0.001, slots=1, slot_lease_s=0.01), campaign_slot_limit=1)
    assert isinstance(ledger.claim("crashed", 30, limits=lapsing), Claim)
    time.sleep(0.03)

    # When an interactive call finds the slots full, and takes the lapsed one back
    assert isinstance(ledger.claim("otp", 30, limits=replace(lapsing, slot_lease_s=60)), Claim)

    # Then the campaigns' share has it back too: the pacer, which counts what that set holds,
    # does not wait for a slot no call holds
    assert ledger.redis.zrange("t:slots", 0, -1) == [b"otp"]
    assert ledger.redis.zcard("t:slots:campaign") == 0


def test_the_account_key_does_not_reveal_the_token() -> None:
    token = "11111111-2222-3333-4444-555555555555"
    assert token not in account_key(token)
    assert account_key(token) == account_key(token)
