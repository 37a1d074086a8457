"""A user's result task, as an application would write one: it keeps what it receives.

Each execution is recorded with its Celery task id. A message runs again if its worker dies
before acknowledging it (Celery's at-least-once), but it keeps its task id; a second *publish*
of an outcome would have a new one. So distinct task ids count deliveries.
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Task

from cmvoice.worker import app

OUTCOMES_KEY = "test:outcomes"


# Like any task that writes somewhere, it retries while that place is briefly down (the fault
# suite restarts Redis); a retry keeps the task id, so it is not a second delivery.
@app.task(
    name="tests.record_outcome",
    bind=True,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=0.2,
    max_retries=20,
)
def record_outcome(self: Task, outcome: dict[str, Any]) -> None:
    client = redis.Redis.from_url(os.environ["CMVOICE_BROKER_URL"])
    client.rpush(OUTCOMES_KEY, json.dumps({**outcome, "task_id": self.request.id}))
    client.close()


def received_outcomes() -> list[dict[str, Any]]:
    """Each delivered outcome once (a re-run of the same message is not a new delivery)."""
    client = redis.Redis.from_url(os.environ["CMVOICE_BROKER_URL"])
    try:
        executions = [json.loads(item) for item in client.lrange(OUTCOMES_KEY, 0, -1)]
    finally:
        client.close()
    by_task = {execution["task_id"]: execution for execution in executions}
    return list(by_task.values())
