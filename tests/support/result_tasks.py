"""A user's result task, as an application writes one with ``@cmvoice.result_task``: it keeps
what it receives, and how often it processed each delivery.

An outcome may be delivered more than once (the outbox publishes it again until confirmed);
the decorator runs this function once per delivery id. ``processings()`` counts how often it
did run per delivery id, so a test can assert "processed once" for real. Each outcome kept
says which process ran it and when (``worker_pid``, ``at``): the decorator runs a function again
if its worker died, or Redis went away, between the function and the confirmation, and a test
can tell those cases.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

from cmvoice.config import get_settings
from cmvoice.delivery import result_task
from cmvoice.outcomes import CallOutcome

OUTCOMES_KEY = "test:outcomes"
PROCESSED_KEY = "test:processed"


# Like any task that writes somewhere, it retries while that place is briefly down (the fault
# suite restarts Redis).
@result_task(
    "tests.record_outcome",
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=0.2,
    max_retries=20,
)
def record_outcome(outcome: CallOutcome) -> None:
    keep(outcome)


@result_task("tests.record_outcome_slowly")
def record_outcome_slowly(outcome: CallOutcome) -> None:
    """The same, taking half a second: long enough for two copies of a delivery to overlap."""
    time.sleep(0.5)
    keep(outcome)


def keep(outcome: CallOutcome) -> None:
    client = redis.Redis.from_url(get_settings().effective_redis_url)
    pipe = client.pipeline(transaction=True)
    kept = {**outcome.to_dict(), "worker_pid": os.getpid(), "at": time.time()}
    pipe.rpush(OUTCOMES_KEY, json.dumps(kept))
    pipe.hincrby(PROCESSED_KEY, outcome.delivery_id, 1)
    pipe.execute()
    client.close()


def received_outcomes() -> list[dict[str, Any]]:
    """Each outcome the task processed, in order."""
    client = redis.Redis.from_url(get_settings().effective_redis_url)
    try:
        return [json.loads(item) for item in client.lrange(OUTCOMES_KEY, 0, -1)]
    finally:
        client.close()


def processings() -> dict[str, int]:
    """How often the task processed each delivery id."""
    client = redis.Redis.from_url(get_settings().effective_redis_url)
    try:
        return {k.decode(): int(v) for k, v in client.hgetall(PROCESSED_KEY).items()}
    finally:
        client.close()
