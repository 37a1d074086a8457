"""The callback receiver: CM's callbacks in, ``cmvoice.handle_result`` tasks out.

It checks the signed URL before it reads the body, never calls CM and never waits on a worker:
its only work is verify, parse, de-duplicate and publish.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from kombu.exceptions import OperationalError
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from cmvoice import lua
from cmvoice.bounded_json import JsonLimitExceeded, loads_bounded
from cmvoice.errors import InvalidEvent
from cmvoice.events import CallQueued, parse_event
from cmvoice.messages import HANDLE_RESULT_TASK, RESULTS_QUEUE
from cmvoice.publishing import envelope, publish_task
from cmvoice.replies import as_text
from cmvoice.runtime import Runtime, get_runtime
from cmvoice.signing import CALLBACK_PATH, verify
from cmvoice.worker import app

logger = logging.getLogger(__name__)

#: Largest callback body accepted; CM's are well under 1 KiB.
MAX_BODY_BYTES = 16 * 1024
#: Fields never put in a task argument: they are personal data.
NUMBER_FIELDS = ("callee", "caller")
#: Publishing gives up quickly when the broker is down, so CM gets its 503 at once.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
#: Seconds ``/healthz`` waits for a broker other than the ledger's Redis to take a connection.
HEALTH_CONNECT_TIMEOUT_S = 2.0


class ReceiverMetrics:
    """Prometheus metrics of one receiver app (its own registry, so tests can make many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.callbacks = Counter(
            "cmvoice_callbacks_total",
            "Callbacks accepted, by event type and result code",
            ["type", "code"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "cmvoice_callbacks_rejected_total",
            "Callbacks refused or ignored, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.publish_seconds = Histogram(
            "cmvoice_callback_publish_seconds",
            "Time to publish cmvoice.handle_result to the broker",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )


def _problem(status: int, reason: str, message: str, metrics: ReceiverMetrics) -> JSONResponse:
    metrics.rejected.labels(reason=reason).inc()
    return JSONResponse({"error": reason, "message": message}, status_code=status)


def create_app(runtime_factory: Callable[[], Runtime] = get_runtime) -> FastAPI:
    """The receiver's ASGI app. ``runtime_factory`` gives the Redis and settings to use."""
    api = FastAPI(title="cmvoice callback receiver", docs_url=None, redoc_url=None)
    metrics = ReceiverMetrics()
    api.state.metrics = metrics

    def publish(event: dict[str, Any]) -> None:
        publish_task(
            HANDLE_RESULT_TASK,
            [event],
            RESULTS_QUEUE,
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )

    @api.post(CALLBACK_PATH + "/{instruction_id}/{signature}", status_code=204)
    async def callback(instruction_id: str, signature: str, request: Request) -> Response:
        runtime = runtime_factory()
        # Verify first: an unsigned request costs us no parsing.
        if not verify(instruction_id, signature, runtime.callback_secret):
            return _problem(403, "bad_signature", "the callback URL's signature is wrong", metrics)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _problem(413, "too_large", f"body over {MAX_BODY_BYTES} bytes", metrics)
        body = b""
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    return _problem(413, "too_large", f"body over {MAX_BODY_BYTES} bytes", metrics)
        except ClientDisconnect:
            # Gone before the whole body came: nobody reads this answer, but uncaught it is
            # an "Exception in ASGI application" traceback in the log for every such client.
            return _problem(400, "disconnected", "the client left before the body ended", metrics)
        try:
            data = loads_bounded(body)
        except JsonLimitExceeded as exc:
            # Too deep or too long a number: json.loads would crash on it (a 500 CM retries).
            return _problem(400, exc.rule, f"body refused: {exc}", metrics)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _problem(400, "malformed_json", f"body is not JSON: {exc}", metrics)
        try:
            event = parse_event(data)
        except InvalidEvent as exc:
            return _problem(422, "invalid_event", str(exc), metrics)
        if isinstance(event, CallQueued):
            return _problem(422, "invalid_event", "call-queued is not a callback", metrics)
        if event.instruction_id != instruction_id:
            return _problem(
                403, "id_mismatch", "the body's instruction-id does not match the URL", metrics
            )
        return await _accept(runtime, event.type, event.call_id, event.result.code, event)

    async def _accept(runtime: Runtime, kind: str, call_id: str, code: int, event: Any) -> Response:
        task_argument = event.to_payload()
        for name in NUMBER_FIELDS:
            task_argument.pop(name, None)
        # One hop to a thread for both blocking steps: the hop costs more than either step.
        outcome = await run_in_threadpool(_take, runtime, kind, call_id, task_argument)
        if outcome == "unavailable":
            return _problem(503, "broker_unavailable", "broker unreachable; retry later", metrics)
        if outcome == "mismatch":
            return _problem(
                409,
                "call_id_mismatch",
                "the call-id is not the one CM gave for this instruction; ignored",
                metrics,
            )
        if outcome in ("duplicate", "missing"):
            reason = "duplicate" if outcome == "duplicate" else "unknown_call"
            metrics.rejected.labels(reason=reason).inc()
        else:
            metrics.callbacks.labels(type=kind, code=str(code)).inc()
        return Response(status_code=204)

    def _take(runtime: Runtime, kind: str, call_id: str, task_argument: dict[str, Any]) -> str:
        """Check the call-id, drop a duplicate, keep the event in the inbox and publish it."""
        keys = runtime.keys
        iid = str(task_argument.get("instruction-id", ""))
        guard = keys.callback_guard(iid, call_id, kind)
        # With the ledger's Redis as the broker, the message goes out in the same atomic step.
        atomic = runtime.settings.broker_is_ledger_redis
        queue, message = (
            envelope(HANDLE_RESULT_TASK, [task_argument], RESULTS_QUEUE)
            if atomic
            else (RESULTS_QUEUE, b"")
        )
        started = time.perf_counter()
        try:
            outcome = as_text(
                lua.load(runtime.redis, "accept_callback")(
                    keys=[keys.call(iid), guard, keys.inbox(), queue],
                    args=[
                        call_id,
                        int(runtime.settings.retention),
                        json.dumps(task_argument, separators=(",", ":")),
                        message,
                        iid,
                    ],
                )
            )
        except (redis.RedisError, OSError):
            return "unavailable"
        if outcome == "accepted" and not atomic:
            try:
                publish(task_argument)
            except (OperationalError, redis.RedisError, OSError) as exc:
                # Forget we saw it, so that CM's retry is not taken for a duplicate.
                _forget(runtime, guard, iid)
                logger.warning("callback %s: broker unreachable (%s); answered 503", iid, exc)
                return "unavailable"
        metrics.publish_seconds.observe(time.perf_counter() - started)
        return outcome

    @api.get("/healthz")
    def healthz() -> JSONResponse:
        runtime = runtime_factory()
        # Redis is the broker too, or (RabbitMQ as the broker) the ledger's only.
        redis_role = "broker" if runtime.settings.broker_is_ledger_redis else "ledger"
        try:
            runtime.redis.ping()
        except (redis.RedisError, OSError) as exc:
            return JSONResponse({"status": "unavailable", redis_role: str(exc)}, status_code=503)
        if redis_role == "ledger":
            problem = _broker_problem()
            if problem is not None:
                return JSONResponse({"status": "unavailable", "broker": problem}, status_code=503)
        return JSONResponse({"status": "ok", "broker": "reachable"})

    @api.get("/metrics")
    def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return api


def _broker_problem() -> str | None:
    """Why a broker other than the ledger's Redis cannot be reached, or None when it can.

    A connection of its own: a pooled one may look open long after the broker went away.
    """
    try:
        with app.connection_for_write(connect_timeout=HEALTH_CONNECT_TIMEOUT_S) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
    except Exception as exc:  # each transport raises its own errors: any of them means down
        return str(exc) or type(exc).__name__
    return None


def _forget(runtime: Runtime, guard: str, instruction_id: str) -> None:
    try:
        pipe = runtime.redis.pipeline(transaction=True)
        pipe.delete(guard)
        pipe.zrem(runtime.keys.inbox(), instruction_id)
        pipe.hdel(runtime.keys.call(instruction_id), "callback")
        pipe.execute()
    except (redis.RedisError, OSError):
        logger.debug("could not clear the duplicate guard of %s", instruction_id)
