"""A user's result task, as an application would write one: it keeps what it receives."""

from __future__ import annotations

import json
import os
from typing import Any

import redis

from cmvoice.worker import app

OUTCOMES_KEY = "test:outcomes"


@app.task(name="tests.record_outcome")
def record_outcome(outcome: dict[str, Any]) -> None:
    client = redis.Redis.from_url(os.environ["CMVOICE_BROKER_URL"])
    client.rpush(OUTCOMES_KEY, json.dumps(outcome))
    client.close()


def received_outcomes() -> list[dict[str, Any]]:
    client = redis.Redis.from_url(os.environ["CMVOICE_BROKER_URL"])
    try:
        return [json.loads(item) for item in client.lrange(OUTCOMES_KEY, 0, -1)]
    finally:
        client.close()
