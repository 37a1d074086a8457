"""The GCRA rate limiter and the concurrency limiter, against a real Redis."""

from __future__ import annotations

import itertools
import time

import redis

from cmvoice.config import Rate, parse_rate
from cmvoice.ratelimit import ConcurrencyLimiter, GcraLimiter, account_key


def test_reservations_are_spaced_by_the_emission_interval(redis_url: str) -> None:
    limiter = GcraLimiter(redis.Redis.from_url(redis_url), "t:rate", Rate(10, 1))

    waits = [limiter.reserve(max_wait_s=10).wait_s for _ in range(5)]

    # Each call gets the next slot, 100 ms after the previous one (minus the time spent asking).
    assert waits[0] == 0
    for earlier, later in itertools.pairwise(waits):
        assert 0.08 <= later - earlier <= 0.1


def test_a_wait_beyond_the_bound_reserves_nothing(redis_url: str) -> None:
    limiter = GcraLimiter(redis.Redis.from_url(redis_url), "t:rate", Rate(1, 1))
    assert limiter.reserve(max_wait_s=0.5).granted

    refused = limiter.reserve(max_wait_s=0.5)
    assert not refused.granted
    assert 0.9 <= refused.wait_s <= 1.0
    # Refusing reserved nothing: the next caller with patience gets the same slot.
    accepted = limiter.reserve(max_wait_s=2)
    assert accepted.granted
    assert accepted.wait_s <= refused.wait_s


def test_two_limiters_on_one_key_share_the_account_budget(redis_url: str) -> None:
    one = GcraLimiter(redis.Redis.from_url(redis_url), "t:rate", parse_rate("600/m"))
    two = GcraLimiter(redis.Redis.from_url(redis_url), "t:rate", parse_rate("600/m"))

    waits = sorted([one.reserve(10).wait_s, two.reserve(10).wait_s, one.reserve(10).wait_s])

    assert waits[2] >= 0.18


def test_concurrency_slots_are_capped_and_given_back(redis_url: str) -> None:
    slots = ConcurrencyLimiter(redis.Redis.from_url(redis_url), "t:slots", limit=2, lease_s=60)

    assert slots.acquire("a")
    assert slots.acquire("b")
    assert not slots.acquire("c")
    assert slots.acquire("a"), "a holder renewing its own slot is not refused"

    slots.release("a")
    assert slots.acquire("c")
    assert slots.in_use() == 2


def test_an_expired_slot_lease_frees_the_slot(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    slots = ConcurrencyLimiter(client, "t:slots", limit=1, lease_s=0.01)
    assert slots.acquire("crashed-worker")
    time.sleep(0.03)

    assert slots.acquire("next")


def test_the_account_key_does_not_reveal_the_token() -> None:
    token = "11111111-2222-3333-4444-555555555555"
    assert token not in account_key(token)
    assert account_key(token) == account_key(token)
