"""bench/dispatch.py's second baseline: the plain Celery app a team would write without cmvoice.

One task POSTs the payload it was given (the whole instruction travels in the message) with a
module-level ``requests.Session``: threads pool, ``acks_late``, prefetch multiplier 1, no result
backend. It reads ``BENCH_BROKER_URL`` and ``BENCH_API_URL`` from the environment, so the worker
(``python -m celery -A bench.plain_celery worker``) and the benchmark that publishes agree.
"""

from __future__ import annotations

import os
from typing import Any

import requests
from celery import Celery

#: The queue and the task of this app: nothing of cmvoice's.
QUEUE = "bench.plain"
TASK = "bench.plain_notify"
#: The simulator's product token.
TOKEN = "00000000-0000-0000-0000-000000000000"
#: Connections kept to the API: one per worker thread (bench/dispatch.py runs 32).
POOL_SIZE = 32

app = Celery("bench_plain", set_as_current=False)
app.conf.update(
    broker_url=os.environ.get("BENCH_BROKER_URL", "memory://"),
    broker_connection_retry_on_startup=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_queue=QUEUE,
    task_serializer="json",
    accept_content=["json"],
)

session = requests.Session()
session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=POOL_SIZE))


@app.task(name=TASK)
def notify(payload: dict[str, Any]) -> int:
    """POST one Notification instruction; a refusal raises (the task fails)."""
    response = session.post(
        os.environ["BENCH_API_URL"] + "/Notification",
        json=payload,
        headers={"X-CM-PRODUCTTOKEN": TOKEN},
        timeout=30,
    )
    response.raise_for_status()
    return response.status_code
