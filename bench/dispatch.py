"""Dispatch throughput: cmvoice's worker against a plain requests thread pool, same simulator.

2,000 notifications through ``cmvoice worker`` (threads, concurrency 32) against the simulator
with 20 ms added latency, end to end (enqueue of the first to the last one placed at CM); then,
in the same run, a plain ``requests`` thread pool of the same size POSTing the same payloads to
the same simulator. Prints both rates, their ratio, and the worker's peak memory.

Run: ``python -m bench.dispatch`` (or ``make bench`` for every benchmark).
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench.processes import CMVOICE, SIM_TOKEN, BenchStack, bench_stack, peak_rss_mib
from cmvoice.calls import CallState
from cmvoice.config import Settings
from cmvoice.instructions import NotificationInstruction
from cmvoice.runtime import Runtime, set_runtime

CALLER = "+31761234567"


def callees(count: int) -> list[str]:
    # Ending in 0: the simulator answers them all (..09, ..11, ..12 would fail or redial).
    return [f"+3162{n:06d}0" for n in range(count)]


def plain_pool_rate(sim_url: str, payloads: list[dict[str, Any]], threads: int) -> float:
    """Calls per second of a bare thread pool POSTing the payloads: the ceiling to compare to."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=threads)
    session.mount("http://", adapter)
    headers = {"X-CM-PRODUCTTOKEN": SIM_TOKEN}
    url = sim_url + "/voiceapi/v2/Notification"

    def post(payload: dict[str, Any]) -> int:
        return session.post(url, json=payload, headers=headers, timeout=30).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        statuses = list(pool.map(post, payloads))
    elapsed = time.perf_counter() - started
    session.close()
    assert statuses.count(200) == len(payloads), "the baseline must place every call"
    return len(payloads) / elapsed


def cmvoice_rate(bench: BenchStack, sim_url: str, count: int, threads: int) -> tuple[float, float]:
    """Calls per second through enqueue -> worker -> simulator; and the worker's peak RSS."""
    settings = {
        "broker_url": bench.redis.url,
        "api_url": sim_url + "/voiceapi/v2",
        "rate_limit": "100000/s",
        "max_concurrent_calls": 100000,
        "callback_secret": "bench-secret",
    }
    settings["callback_base_url"] = bench.receiver(settings)
    os.environ["CMVOICE_BROKER_URL"] = bench.redis.url
    runtime = Runtime.from_settings(Settings(**settings))
    set_runtime(runtime)
    from cmvoice.producer import enqueue
    from cmvoice.worker import app

    worker = bench.start(
        "worker",
        [CMVOICE, "worker", "--concurrency", str(threads), "--loglevel", "warning"],
        settings,
    )
    deadline = time.monotonic() + 30
    while not app.control.ping(timeout=0.5) and time.monotonic() < deadline:
        pass

    started = time.perf_counter()
    tickets = [
        enqueue(NotificationInstruction(callee=callee, caller=CALLER, prompt="Benchmark call."))
        for callee in callees(count)
    ]
    # Done when nothing is waiting or being sent: two cheap index sizes, not a read per call.
    ledger = runtime.ledger
    while ledger.count_in(CallState.QUEUED) + ledger.count_in(CallState.DISPATCHING):
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    records = [ledger.get(t.instruction_id) for t in tickets]
    failed = [r for r in records if r is None or r.state is CallState.FAILED]
    assert not failed, f"{len(failed)} calls failed"
    waits = sorted(r.get_int("sent_at") - r.get_int("created_at") for r in records if r)
    most_claims = max(r.get_int("claims") for r in records if r)
    print(
        f"  time in queue (enqueue -> POST) p50 {waits[len(waits) // 2]} ms, "
        f"max {waits[-1]} ms; most claims of one call: {most_claims}"
    )
    # Where the machine's CPU went: on 2 cores this, not waiting, bounds the rate.
    for name, process in bench.processes.items():
        fields = Path(f"/proc/{process.pid}/stat").read_text().split()
        cpu_s = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
        print(f"  CPU of {name:<9}: {cpu_s:6.2f} s ({cpu_s / count * 1000:.2f} ms per call)")
    return count / elapsed, peak_rss_mib(worker.pid)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--latency-ms", type=int, default=20)
    args = parser.parse_args(argv)
    payloads = [
        NotificationInstruction(callee=c, caller=CALLER, prompt="Benchmark call.").to_payload()
        for c in callees(args.calls)
    ]
    with bench_stack() as bench:
        # Callbacks are dropped: this measures dispatch; bench/callbacks.py measures the rest.
        sim = bench.simulator(
            "--time-scale", "0.001", "--latency-ms", str(args.latency_ms), "--drop-callbacks", "1"
        )
        baseline = plain_pool_rate(sim, payloads, args.threads)
        requests.post(sim + "/_sim/reset", timeout=10)
        faults = {"latency-ms": args.latency_ms, "drop-callbacks": 1.0}
        requests.post(sim + "/_sim/faults", json=faults, timeout=10)
        rate, rss = cmvoice_rate(bench, sim, args.calls, args.threads)
    print(
        f"dispatch: {args.calls} notifications, {args.threads} threads, "
        f"{args.latency_ms} ms CM latency, on {os.cpu_count()} cores"
    )
    print(f"  plain requests pool : {baseline:8.1f} calls/s")
    print(f"  cmvoice worker      : {rate:8.1f} calls/s (enqueue -> placed)")
    print(f"  ratio               : {rate / baseline:8.2f} (target >= 0.70)")
    print(f"  worker peak RSS     : {rss:8.1f} MiB")


if __name__ == "__main__":
    main()
