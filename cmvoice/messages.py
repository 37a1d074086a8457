"""Celery task messages as kombu's Redis transport stores them, built without loading Celery.

A Lua step pushes them onto the queue's list in the same atomic step as the ledger transition
that causes them (docs/architecture.md, "Broker and Redis"): a release, a callback taken, an
outcome delivered, an enqueue. The format is Celery's task protocol 2 inside kombu's Redis
envelope; a test compares it with what Celery's own ``send_task`` publishes.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

#: The interactive lane: calls enqueued one by one (``enqueue()``, ``cmvoice send``), served first.
INTERACTIVE_QUEUE = "cmvoice.interactive"
#: The campaign lane: calls the pacer releases from campaign backlogs.
DISPATCH_QUEUE = "cmvoice.dispatch"
RESULTS_QUEUE = "cmvoice.results"
CAMPAIGNS_QUEUE = "cmvoice.campaigns"
#: The application's result tasks' queue by default (CMVOICE_RESULT_QUEUE): not among cmvoice's
#: own, so only a worker that includes those tasks consumes it.
DEFAULT_RESULT_QUEUE = "cmvoice.outcomes"
#: cmvoice's own queues, in the order a worker consumes them: with the Redis transport's
#: "priority" order, a worker takes from a queue only when the ones before it are empty.
ALL_QUEUES = (INTERACTIVE_QUEUE, DISPATCH_QUEUE, RESULTS_QUEUE, CAMPAIGNS_QUEUE)

#: Task names: the public interface of the queue (docs/architecture.md).
DISPATCH_TASK = "cmvoice.dispatch"
HANDLE_RESULT_TASK = "cmvoice.handle_result"
RECONCILE_TASK = "cmvoice.reconcile"

#: The embedded options of a task with no callbacks (protocol 2's third body part).
_NO_CALLBACKS = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def _origin() -> str:
    # Read when the message is built, not at import: a forked worker has another pid.
    return f"gen{os.getpid()}@{socket.gethostname()}"


def task_envelope(
    task_name: str, args: Sequence[Any], queue: str, *, ignore_result: bool = False
) -> bytes:
    """One task message for ``queue``'s list: JSON, the body base64 as kombu's Redis wants."""
    task_id = str(uuid.uuid4())
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task_name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr(list(args)),
        "kwargsrepr": "{}",
        "origin": _origin(),
        "ignore_result": ignore_result,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    body = json.dumps([list(args), {}, _NO_CALLBACKS]).encode()
    document = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(document).encode()


def dispatch_message(instruction_id: str, queue: str) -> bytes:
    """The ``cmvoice.dispatch`` message of one call (its id is the only argument)."""
    return task_envelope(DISPATCH_TASK, [instruction_id], queue, ignore_result=True)
