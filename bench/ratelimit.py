"""Rate-limit accuracy: the account limit as CM sees it, with 1, 3 and 6 worker processes.

For each limit (10/s, 50/s, 200/s) and each number of worker processes (1, 3, 6), calls are
dispatched for a fixed time against the simulator; the simulator's own acceptance times give
the achieved rate, its error against the limit, and the most calls in any one-second window.
Also the cost of one dispatch claim (record, rate turn and slot taken in one Redis step, from
this process), p50 and p99.

Run: ``python -m bench.ratelimit`` (or ``make bench`` for every benchmark).
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime

import redis
import requests

from bench.processes import CMVOICE, BenchStack, bench_stack
from cmvoice.calls import CallState
from cmvoice.config import Settings, parse_rate
from cmvoice.keyspace import Keys
from cmvoice.messages import INTERACTIVE_QUEUE
from cmvoice.runtime import Runtime, set_runtime

CALLER = "+31761234567"


def busiest_second(times: list[float]) -> int:
    """The most calls in any half-open window of one second."""
    best = end = 0
    for start_index, start in enumerate(times):
        while end < len(times) and times[end] < start + 1.0:
            end += 1
        best = max(best, end - start_index)
    return best


def claim_cost_ms(redis_url: str, samples: int = 2000) -> tuple[float, float]:
    """p50 and p99 of one dispatch claim (a limit high enough never to wait)."""
    settings = Settings(
        broker_url=redis_url,
        rate_limit="1000000/s",
        max_concurrent_calls=1_000_000,
        callback_secret="bench",
        product_token="00000000-0000-0000-0000-00000000be9c",
        key_prefix="bench-cost",
    )
    runtime = Runtime.from_settings(settings)
    payload = {"callee": "+31612345678", "caller": CALLER, "prompt": "Cost test."}
    for n in range(samples):
        runtime.ledger.create(f"cost-{n}", "notification", payload)
    costs = []
    for n in range(samples):
        started = time.perf_counter()
        runtime.ledger.claim(f"cost-{n}", 60.0, limits=runtime.limits, send_now=True)
        costs.append((time.perf_counter() - started) * 1000)
    for key in runtime.redis.scan_iter("bench-cost:*"):
        runtime.redis.delete(key)
    runtime.close()
    costs.sort()
    return costs[len(costs) // 2], costs[int(len(costs) * 0.99)]


def run_one(bench: BenchStack, sim: str, limit: str, workers: int, seconds: float) -> str:
    """Dispatch for ``seconds`` at ``limit`` with ``workers`` processes; one line of figures."""
    requests.post(sim + "/_sim/reset", timeout=10)
    requests.post(sim + "/_sim/faults", json={"drop-callbacks": 1.0}, timeout=10)
    client = redis.Redis.from_url(bench.redis.url)
    for key in client.scan_iter(f"{Keys().prefix}:*"):
        client.delete(key)
    client.delete(INTERACTIVE_QUEUE)
    rate = parse_rate(limit)
    settings = {
        "broker_url": bench.redis.url,
        "api_url": sim + "/voiceapi/v2",
        "rate_limit": limit,
        "max_concurrent_calls": 1_000_000,
        "callback_secret": "bench",
        "max_rate_wait": 1,
    }
    runtime = Runtime.from_settings(Settings(**settings))
    set_runtime(runtime)
    from cmvoice.producer import enqueue
    from cmvoice.worker import app

    # Queue enough calls for the whole run first, so that enqueueing does not compete with
    # the workers for the CPU while the limit is measured.
    total = int(rate.per_second * seconds * 1.3) + 20
    for n in range(total):
        enqueue({"callee": f"+3163{n:06d}0", "caller": CALLER, "prompt": "Rate test."})
    names = [f"rl{n}" for n in range(workers)]
    for name in names:
        args = [CMVOICE, "worker", "--concurrency", "16", "--loglevel", "warning"]
        bench.start(name, [*args, "--hostname", f"{name}@%h", "-Q", INTERACTIVE_QUEUE], settings)
    deadline = time.monotonic() + 60
    while len(app.control.ping(timeout=0.5) or []) < workers and time.monotonic() < deadline:
        pass
    time.sleep(seconds)
    for name in names:
        bench.processes[name].terminate()
    for name in names:
        bench.processes.pop(name).wait(30)
    calls = requests.get(sim + "/_sim/calls", timeout=30).json()["calls"]
    times = sorted(datetime.fromisoformat(call["accepted-at"]).timestamp() for call in calls)
    # The steady state: from the first call to the last, so start-up does not count.
    achieved = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    error = (achieved - rate.per_second) / rate.per_second * 100
    left = runtime.ledger.count_in(CallState.QUEUED)
    return (
        f"  limit {limit:>6} x {workers} workers: achieved {achieved:7.2f}/s "
        f"({error:+5.1f}%), busiest second {busiest_second(times):4d} "
        f"(limit + 1 = {int(rate.per_second) + 1}), {len(times)} calls, {left} still queued"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--limits", default="10/s,50/s,200/s")
    parser.add_argument("--workers", default="1,3,6")
    args = parser.parse_args(argv)
    lines = []
    with bench_stack() as bench:
        os.environ["CMVOICE_BROKER_URL"] = bench.redis.url
        sim = bench.simulator("--time-scale", "0.001")
        p50, p99 = claim_cost_ms(bench.redis.url)
        for limit in args.limits.split(","):
            for workers in (int(n) for n in args.workers.split(",")):
                lines.append(run_one(bench, sim, limit, workers, args.seconds))
                print(lines[-1], flush=True)
    print(f"rate limit: {args.seconds:.0f} s per run, on {os.cpu_count()} cores")
    print("\n".join(lines))
    print(
        f"  dispatch claim (rate turn + slot): p50 {p50:.3f} ms, p99 {p99:.3f} ms"
        " (target p50 < 1 ms)"
    )


if __name__ == "__main__":
    main()
