"""Callback throughput and latency: ``cmvoice receiver`` against a bare 204 endpoint.

Part 1: callbacks per second through ``cmvoice receiver`` with 50 concurrent clients, next to a
minimal FastAPI endpoint that only answers 204, served by the same uvicorn setup, in the same
run. Part 2: the latency from a callback's POST to the start of the application's result task
(p50, p99), with a worker consuming ``cmvoice.results``.

Run: ``python -m bench.callbacks`` (or ``make bench`` for every benchmark).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
import requests

from bench.processes import CMVOICE, BenchStack, bench_stack, free_port, wait_http
from bench.result_probe import STARTS_KEY
from cmvoice.calls import CallState
from cmvoice.ledger import CallLedger
from cmvoice.messages import DEFAULT_RESULT_QUEUE, RESULTS_QUEUE
from cmvoice.signing import callback_url

SECRET = "bench-callback-secret"
CALLEE = "+31612345678"
CALLER = "+31761234567"


def event(instruction_id: str, call_id: str) -> dict[str, Any]:
    return {
        "type": "notification-finished",
        "call-id": call_id,
        "instruction-id": instruction_id,
        "caller": CALLER,
        "callee": CALLEE,
        "result": {"code": 10, "description": "Finished"},
        "started-on": "2026-02-09T11:00:31.752Z",
        "answered-on": "2026-02-09T11:00:37.972Z",
        "finished-on": "2026-02-09T11:00:48.112Z",
    }


def placed_calls(redis_url: str, count: int) -> dict[str, str]:
    """``count`` calls PLACED in the ledger, as a worker leaves them: instruction id -> call id
    (a callback must carry the call id CM gave, or the receiver refuses it)."""
    ledger = CallLedger(redis.Redis.from_url(redis_url))
    calls = {}
    for _ in range(count):
        iid, call_id = str(uuid.uuid4()), str(uuid.uuid4())
        ledger.create(iid, "notification", {"callee": CALLEE, "caller": CALLER, "prompt": "x"})
        claim = ledger.claim(iid, lease_s=600)
        assert not isinstance(claim, CallState | None)
        ledger.mark_sending(claim, lease_s=600)
        ledger.placed(claim, call_id)
        calls[iid] = call_id
    return calls


def blast(base_url: str, calls: dict[str, str], clients: int) -> float:
    """POST a signed callback for each of ``calls`` from ``clients`` threads; callbacks/s."""
    ids = list(calls)
    local = threading.local()

    def post(instruction_id: str) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        url = callback_url(base_url, instruction_id, SECRET)
        body = event(instruction_id, calls[instruction_id])
        return local.session.post(url, json=body, timeout=30).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(post, ids))
    elapsed = time.perf_counter() - started
    assert statuses.count(204) == len(ids), f"not all accepted: {set(statuses)}"
    return len(ids) / elapsed


def uvicorn_baseline(bench: BenchStack) -> str:
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "bench.minimal_app:app", "--port", str(port)]
    args += ["--log-level", "warning", "--no-access-log"]
    bench.start("baseline", args, {})
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/docs")
    return url


def latency_ms(
    bench: BenchStack, settings: dict[str, Any], receiver: str, calls: int
) -> list[float]:
    """Callback POST -> start of the result task, for ``calls`` callbacks sent 20 ms apart."""
    client = redis.Redis.from_url(bench.redis.url)
    placed = placed_calls(bench.redis.url, calls)
    ids = list(placed)
    args = [CMVOICE, "worker", "--concurrency", "8", "--loglevel", "warning"]
    # handle_result's queue, and the application's result tasks' own (CMVOICE_RESULT_QUEUE)
    queues = f"{RESULTS_QUEUE},{DEFAULT_RESULT_QUEUE}"
    args += ["--queues", queues, "--include", "bench.result_probe"]
    bench.start("worker", args, {**settings, "result_tasks": "bench.result_probe"})
    from cmvoice.worker import app

    while not app.control.ping(timeout=0.5):
        pass
    session = requests.Session()
    sent: dict[str, float] = {}
    for iid in ids:
        sent[iid] = time.time()
        url = callback_url(receiver, iid, SECRET)
        response = session.post(url, json=event(iid, placed[iid]), timeout=30)
        assert response.status_code == 204
        time.sleep(0.02)
    deadline = time.monotonic() + 60
    while client.hlen(STARTS_KEY) < calls and time.monotonic() < deadline:
        time.sleep(0.05)
    starts = {k.decode(): float(v) for k, v in client.hgetall(STARTS_KEY).items()}
    if len(starts) < calls:
        log = (bench.workdir / "worker.log").read_text()[-3000:]
        raise RuntimeError(
            f"only {len(starts)} of {calls} result tasks started; worker log:\n{log}"
        )
    return sorted((starts[iid] - sent[iid]) * 1000 for iid in ids)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--callbacks", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--latency-samples", type=int, default=300)
    args = parser.parse_args(argv)
    with bench_stack() as bench:
        os.environ["CMVOICE_BROKER_URL"] = bench.redis.url
        # No CM is called here; a non-CM API URL lets the worker use the simulator's token.
        settings = {
            "broker_url": bench.redis.url,
            "callback_secret": SECRET,
            "api_url": "http://127.0.0.1:9/voiceapi/v2",
        }
        receiver = bench.receiver(settings)
        baseline = uvicorn_baseline(bench)
        calls = placed_calls(bench.redis.url, args.callbacks)
        base_rate = blast(baseline, calls, args.clients)
        receiver_rate = blast(receiver, calls, args.clients)
        redis.Redis.from_url(bench.redis.url).delete("cmvoice.results")
        latencies = latency_ms(bench, settings, receiver, args.latency_samples)
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"callbacks: {args.callbacks} callbacks, {args.clients} concurrent clients, "
        f"on {os.cpu_count()} cores"
    )
    print(f"  minimal 204 endpoint : {base_rate:8.1f} callbacks/s")
    print(f"  cmvoice receiver     : {receiver_rate:8.1f} callbacks/s")
    print(f"  ratio                : {receiver_rate / base_rate:8.2f} (target >= 0.50)")
    print(
        f"  POST -> result task  : p50 {p50:.1f} ms, p99 {p99:.1f} ms "
        f"(targets 50 / 250 ms; {len(latencies)} callbacks, 20 ms apart)"
    )


if __name__ == "__main__":
    main()
