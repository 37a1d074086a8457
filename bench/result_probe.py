"""A result task that notes when it started, for the callback-to-task latency benchmark."""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from cmvoice.worker import app

STARTS_KEY = "bench:result-starts"
_client: redis.Redis | None = None


@app.task(name="bench.result_probe")
def result_probe(outcome: dict[str, Any]) -> None:
    started = time.time()
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["CMVOICE_BROKER_URL"])
    _client.hset(STARTS_KEY, outcome["instruction_id"], repr(started))
