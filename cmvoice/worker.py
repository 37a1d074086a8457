"""The Celery app: queues, serializer, acknowledgement and visibility settings.

``celery -A cmvoice.worker worker`` works; ``cmvoice worker`` starts it with defaults made for
this I/O-bound work. The configuration is read lazily from Settings, on first use.
"""

from __future__ import annotations

from typing import Any

import click
import redis
from celery import Celery
from kombu import Queue
from kombu.exceptions import OperationalError

from cmvoice.config import Settings, get_settings
from cmvoice.messages import (
    ALL_QUEUES,
    CAMPAIGNS_QUEUE,
    HANDLE_RESULT_TASK,
    INTERACTIVE_QUEUE,
    RECONCILE_TASK,
    RESULTS_QUEUE,
)

#: Seconds a message may stay unacknowledged before Redis hands it to another worker. It must
#: exceed the longest countdown the code produces (MAX_COUNTDOWN_S) plus the longest task (a
#: dispatch: the rate wait and the HTTP timeouts), or a waiting retry would run twice; the ledger
#: makes that harmless, this keeps it rare. It is also how long the messages of a worker killed
#: with SIGKILL wait before another worker gets them: short, so nothing waits for long.
VISIBILITY_TIMEOUT_S = 60
#: Seconds between two looks for such messages.
UNACKED_RESTORE_INTERVAL_S = 5

#: Errors of a Redis or broker that is restarting or briefly unreachable: the task is retried
#: (with backoff), not dropped. Every task is idempotent, so a retry after a partial run is safe.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    OperationalError,
)
#: Options of tasks that must survive a Redis restart.
RETRY_ON_OUTAGE: dict[str, Any] = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 30,
}

TASK_MODULES = [
    "cmvoice.tasks.dispatch",
    "cmvoice.tasks.results",
    "cmvoice.tasks.maintenance",
    # Confirms deliveries to result tasks this worker runs (task_success).
    "cmvoice.delivery",
]
#: The pacer's loop runs in every worker, next to its consumer (one releases at a time).
PACER_STEP = "cmvoice.tasks.pacing:PacerStep"
#: Task events for Flower flushed on a timer, many tasks' to a publish.
EVENT_BATCHING_STEP = "cmvoice.tasks.event_batching:EventBatchingStep"
#: Serves the worker's Prometheus metrics when a port is given (cmvoice/metrics.py).
METRICS_STEP = "cmvoice.tasks.exporting:MetricsStep"
#: Options of Celery's ``worker`` command that MetricsStep reads.
METRICS_OPTIONS = (
    click.Option(
        ["--metrics-port"],
        type=click.IntRange(1, 65535),
        default=None,
        help="Serve Prometheus metrics on this port (default: CMVOICE_WORKER_METRICS_PORT; "
        "none: off).",
    ),
    click.Option(
        ["--metrics-host"],
        default=None,
        help="Interface the metrics are served on (default: 127.0.0.1).",
    ),
)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from cmvoice's Settings."""
    transport = {
        # Queues in the order given (ALL_QUEUES), not round robin: the interactive lane first.
        "queue_order_strategy": "priority",
        "visibility_timeout": VISIBILITY_TIMEOUT_S,
        "unacked_restore_interval": UNACKED_RESTORE_INTERVAL_S,
        "unacked_restore_throttle": 1,
    }
    return {
        "broker_url": settings.effective_broker_url,
        "result_backend": settings.effective_redis_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        # JSON only: a pickled message could run code, and JSON is readable in Flower.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        # Results are in the ledger; the result backend is for tasks that need one.
        "task_ignore_result": True,
        # Ack after the task ran, and give the message back if the worker dies meanwhile:
        # the ledger's claim makes the redelivery harmless.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_queues": [Queue(name) for name in ALL_QUEUES],
        "task_default_queue": INTERACTIVE_QUEUE,
        "task_routes": {
            HANDLE_RESULT_TASK: {"queue": RESULTS_QUEUE},
            RECONCILE_TASK: {"queue": RESULTS_QUEUE},
            "cmvoice.campaign.*": {"queue": CAMPAIGNS_QUEUE},
        },
        # No task-sent events: each would cost producers (the receiver, campaigns) one more
        # publish per task. Workers still send received/started/succeeded for Flower.
        "task_send_sent_event": False,
        # Producer connections shared by the receiver's and workers' threads; Celery's default
        # of 10 makes 40 request threads queue for a connection.
        "broker_pool_limit": 64,
        "worker_send_task_events": True,
        "beat_schedule": {
            "cmvoice-reconcile": {
                "task": RECONCILE_TASK,
                "schedule": settings.reconcile_interval,
                "options": {"expires": max(settings.reconcile_interval, 1.0)},
            }
        },
    }


def create_app(settings_factory: Any = get_settings) -> Celery:
    """A Celery app configured lazily from ``settings_factory()``."""
    celery_app = Celery("cmvoice", include=TASK_MODULES, set_as_current=True)
    celery_app.add_defaults(lambda: celery_config(settings_factory()))
    celery_app.steps["consumer"].add(PACER_STEP)
    celery_app.steps["consumer"].add(EVENT_BATCHING_STEP)
    celery_app.steps["worker"].add(METRICS_STEP)
    celery_app.user_options["worker"].update(METRICS_OPTIONS)
    return celery_app


app = create_app()
