"""Dispatch throughput: cmvoice's worker against a plain Celery worker, same simulator.

2,000 notifications against the simulator with 20 ms added latency (callbacks dropped, so that
this measures dispatch), end to end: from the first enqueue (or publish) to the last call the
simulator accepted. Through ``cmvoice worker`` (threads, concurrency 32), and through a plain
Celery worker (bench/plain_celery.py: threads pool 32, acks_late, prefetch multiplier 1, a task
that POSTs the payload it carries with a requests Session): five rounds of each, alternating,
each with a fresh queue and a fresh worker process. Per round: calls/s, worker CPU ms per call,
Redis commands per call (INFO; commands run inside Lua count too) and what they are; then the
medians and the ratio cmvoice / plain Celery per worker process (target 1.0 or more). First,
once, the ceiling: a bare ``requests`` thread pool of the same size POSTing the same payloads.

Run: ``python -m bench dispatch`` (or ``make bench`` for every benchmark); ``--help`` for options.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis
import requests

from bench.measure import RedisCommands, median, process_tree_cpu_s, wait_until
from bench.processes import CMVOICE, SIM_TOKEN, BenchStack, bench_stack, peak_rss_mib
from cmvoice.calls import CallState
from cmvoice.config import Settings
from cmvoice.instructions import NotificationInstruction
from cmvoice.runtime import Runtime, set_runtime

CALLER = "+31761234567"
#: What each kind of round runs.
CMVOICE_KIND = "cmvoice"
PLAIN_KIND = "plain Celery"


def callees(count: int) -> list[str]:
    # Ending in 0: the simulator answers them all (..09, ..11, ..12 would fail or redial).
    return [f"+3162{n:06d}0" for n in range(count)]


def plain_payloads(count: int, receiver_url: str) -> list[dict[str, Any]]:
    """The bodies cmvoice POSTs: the instruction, its id and a callback URL of the same size."""
    payloads = []
    for callee in callees(count):
        instruction_id = str(uuid.uuid4())
        payload = NotificationInstruction(
            callee=callee, caller=CALLER, prompt="Benchmark call."
        ).to_payload()
        payload["instruction-id"] = instruction_id
        payload["callback-url"] = f"{receiver_url}/callbacks/cm/{instruction_id}/{'0' * 64}"
        payloads.append(payload)
    return payloads


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


@dataclass(frozen=True)
class Round:
    """The figures of one round."""

    kind: str
    calls_per_s: float
    cpu_ms_per_call: float
    commands: RedisCommands
    calls: int
    rss_mib: float
    note: str = ""

    @property
    def commands_per_call(self) -> float:
        return self.commands.total / self.calls

    def line(self) -> str:
        return (
            f"  {self.kind:<12} {self.calls_per_s:8.1f} calls/s, worker CPU "
            f"{self.cpu_ms_per_call:5.2f} ms/call, Redis {self.commands_per_call:5.1f} "
            f"commands/call{self.note}"
        )


def sim_placed(sim_url: str) -> int:
    return int(requests.get(sim_url + "/_sim/stats", timeout=10).json()["calls"]["total"])


def fresh(bench: BenchStack, sim_url: str, latency_ms: int) -> None:
    """An empty Redis (a fresh queue) and a simulator that forgot every call."""
    bench.empty_redis()
    requests.post(sim_url + "/_sim/reset", timeout=10).raise_for_status()
    faults = {"latency-ms": latency_ms, "drop-callbacks": 1.0}
    requests.post(sim_url + "/_sim/faults", json=faults, timeout=10).raise_for_status()


def measure(
    bench: BenchStack, sim_url: str, kind: str, pid: int, count: int, publish: Any
) -> tuple[float, float, RedisCommands]:
    """Run ``publish()`` and wait until the simulator placed ``count`` calls: (calls/s, worker
    CPU ms per call, Redis commands meanwhile)."""
    client = redis.Redis.from_url(bench.redis.url)
    before, cpu_before = RedisCommands.read(client), process_tree_cpu_s(pid)
    started = time.perf_counter()
    publish()
    # Polled at the simulator, not in Redis, so that no command of ours is counted.
    if not wait_until(lambda: sim_placed(sim_url) >= count, timeout_s=600, every_s=0.02):
        raise RuntimeError(f"{kind}: only {sim_placed(sim_url)} of {count} calls placed")
    elapsed = time.perf_counter() - started
    cpu_ms = (process_tree_cpu_s(pid) - cpu_before) * 1000 / count
    commands = RedisCommands.read(client).since(before)
    client.close()
    return count / elapsed, cpu_ms, commands


def cmvoice_round(
    bench: BenchStack, sim_url: str, settings: dict[str, Any], count: int, threads: int, n: int
) -> Round:
    """``count`` calls through enqueue() and a fresh ``cmvoice worker``."""
    from cmvoice.producer import enqueue
    from cmvoice.runtime import get_runtime
    from cmvoice.worker import app

    name = f"cmvoice{n}"
    args = [CMVOICE, "worker", "--concurrency", str(threads), "--loglevel", "warning"]
    worker = bench.start(name, [*args, "--hostname", f"{name}@%h"], settings)
    wait_until(lambda: app.control.ping(timeout=0.5), timeout_s=60, every_s=0)
    instructions = [
        NotificationInstruction(callee=callee, caller=CALLER, prompt="Benchmark call.")
        for callee in callees(count)
    ]
    tickets: list[Any] = []

    def publish() -> None:
        tickets.extend(enqueue(instruction) for instruction in instructions)

    rate, cpu_ms, commands = measure(bench, sim_url, CMVOICE_KIND, worker.pid, count, publish)
    rss = peak_rss_mib(worker.pid)
    ledger = get_runtime().ledger
    wait_until(lambda: not ledger.count_in(CallState.DISPATCHING), timeout_s=30)
    records = [ledger.get(ticket.instruction_id) for ticket in tickets]
    failed = [r for r in records if r is None or r.state is CallState.FAILED]
    assert not failed, f"{len(failed)} calls failed"
    waits = sorted(r.get_int("sent_at") - r.get_int("created_at") for r in records if r)
    note = f"; enqueue -> POST p50 {waits[len(waits) // 2]} ms, max {waits[-1]} ms"
    bench.stop(name)
    return Round(CMVOICE_KIND, rate, cpu_ms, commands, count, rss, note)


def plain_round(
    bench: BenchStack, sim_url: str, payloads: list[dict[str, Any]], threads: int, n: int
) -> Round:
    """The same calls through a fresh plain Celery worker, published with ``delay()``."""
    from bench import plain_celery

    name = f"plain{n}"
    args = [sys.executable, "-m", "celery", "-A", "bench.plain_celery", "worker"]
    args += ["--pool", "threads", "--concurrency", str(threads), "--loglevel", "warning"]
    args += ["-Q", plain_celery.QUEUE, "--hostname", f"{name}@%h"]
    env = {"BENCH_BROKER_URL": bench.redis.url, "BENCH_API_URL": sim_url + "/voiceapi/v2"}
    worker = bench.start(name, args, {}, extra_env=env)
    wait_until(lambda: plain_celery.app.control.ping(timeout=0.5), timeout_s=60, every_s=0)

    def publish() -> None:
        for payload in payloads:
            plain_celery.notify.delay(payload)

    count = len(payloads)
    rate, cpu_ms, commands = measure(bench, sim_url, PLAIN_KIND, worker.pid, count, publish)
    rss = peak_rss_mib(worker.pid)
    bench.stop(name)
    return Round(PLAIN_KIND, rate, cpu_ms, commands, count, rss)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000, help="notifications per round")
    parser.add_argument("--threads", type=int, default=32, help="worker threads (both)")
    parser.add_argument("--latency-ms", type=int, default=20, help="the simulator's latency")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each, alternating")
    args = parser.parse_args(argv)
    with bench_stack() as bench:
        os.environ["CMVOICE_BROKER_URL"] = bench.redis.url
        os.environ["BENCH_BROKER_URL"] = bench.redis.url
        # Callbacks are dropped: this measures dispatch; bench/callbacks.py measures the rest.
        sim = bench.simulator(
            "--time-scale", "0.001", "--latency-ms", str(args.latency_ms), "--drop-callbacks", "1"
        )
        os.environ["BENCH_API_URL"] = sim + "/voiceapi/v2"
        settings: dict[str, Any] = {
            "broker_url": bench.redis.url,
            "api_url": sim + "/voiceapi/v2",
            "rate_limit": "100000/s",
            "max_concurrent_calls": 100000,
            "callback_secret": "bench-secret",
        }
        settings["callback_base_url"] = bench.receiver(settings)
        set_runtime(Runtime.from_settings(Settings(**settings)))
        payloads = plain_payloads(args.calls, settings["callback_base_url"])
        ceiling = plain_pool_rate(sim, payloads, args.threads)
        rounds: list[Round] = []
        for n in range(args.rounds):
            fresh(bench, sim, args.latency_ms)
            rounds.append(cmvoice_round(bench, sim, settings, args.calls, args.threads, n))
            print(rounds[-1].line(), flush=True)
            fresh(bench, sim, args.latency_ms)
            rounds.append(plain_round(bench, sim, payloads, args.threads, n))
            print(rounds[-1].line(), flush=True)
    print(
        f"dispatch: {args.calls} notifications per round, {args.threads} threads, "
        f"{args.latency_ms} ms CM latency, {args.rounds} rounds of each, on "
        f"{os.cpu_count()} cores; medians"
    )
    figures = {}
    for kind in (CMVOICE_KIND, PLAIN_KIND):
        mine = [r for r in rounds if r.kind == kind]
        rate = median([r.calls_per_s for r in mine])
        figures[kind] = rate
        print(
            f"  {kind:<20}: {rate:8.1f} calls/s, worker CPU "
            f"{median([r.cpu_ms_per_call for r in mine]):5.2f} ms/call, Redis "
            f"{median([r.commands_per_call for r in mine]):5.1f} commands/call, "
            f"peak RSS {median([r.rss_mib for r in mine]):5.1f} MiB"
        )
        middle = sorted(mine, key=lambda r: r.commands_per_call)[len(mine) // 2]
        print(f"    commands per call: {middle.commands.split(middle.calls)}")
    print(f"  plain requests pool : {ceiling:8.1f} calls/s (the ceiling: POSTs only)")
    ratio = figures[CMVOICE_KIND] / figures[PLAIN_KIND]
    met = "met" if ratio >= 1.0 else "not met"
    print(f"  ratio cmvoice / plain Celery, per worker process: {ratio:.2f} (target >= 1.0: {met})")
    print(f"  ratio cmvoice / requests pool: {figures[CMVOICE_KIND] / ceiling:.2f}")


if __name__ == "__main__":
    main()
