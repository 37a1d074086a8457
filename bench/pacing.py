"""Pacing: a 20,000-row campaign at the account's limit, with interactive OTP probes meanwhile.

A notification campaign of 20,000 rows at CMVOICE_RATE_LIMIT=10/s against the simulator in real
time (``--time-scale 1``: a call lasts about 7.5 s), through one ``cmvoice worker --beat``, for
``--seconds`` a round (the campaign need not finish): with 50 concurrent calls (the campaigns'
42 of them bind: 42 / the calls' mean length, plus the probes in the 8 kept for interactive
calls, ``--interactive-slots``) and with 1,000 (the rate binds), alternating for ``--rounds``.
An OTP call is enqueued every 2 s meanwhile (a probe of the interactive lane); a probe's call
lasts about 12.7 s in the simulator, so about 6.4 are in progress at once, and the slots kept
for interactive calls are sized for that, as an operator sizes CMVOICE_INTERACTIVE_SLOTS for
the interactive calls that ring at once at peak.
Baselines of the same run: the probes on the idle stack, before the rounds; and, right before
each round, a burst of notifications through a worker with nothing binding (an unconstrained
dispatch), so that each round's CPU per call is compared with a baseline taken at the same
moment of this shared machine (its speed moves by a third within minutes).

Per round, over a steady window (after ``--warmup`` s, and after every row was enqueued):
placed/s against the binding limit, worker CPU ms per placed call (the worker and its
children), Redis commands per placed call (INFO; commands run inside Lua count too, the
benchmark's own sampling does not) with the commands and task messages that make it up, the
peak length of the dispatch queues (sampled every 100 ms over the whole round), the worker's
peak RSS, and the probes' enqueue -> POST latency (the simulator's acceptance time less the
enqueue's). Medians over the rounds, next to the targets.

Run: ``python -m bench pacing`` (or ``make bench`` for every benchmark); ``--help`` for options.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis
import requests

from bench.measure import (
    QueueSampler,
    RedisCommands,
    median,
    percentile,
    process_tree_cpu_s,
    wait_until,
)
from bench.probes import CALLER, Probes, accepted_times, most_at_once, sent_ms
from bench.processes import CMVOICE, BenchStack, bench_stack, peak_rss_mib
from cmvoice.calls import CallState
from cmvoice.config import Settings, parse_rate
from cmvoice.messages import DISPATCH_QUEUE, INTERACTIVE_QUEUE
from cmvoice.runtime import Runtime, set_runtime

TEMPLATE = {"caller": CALLER, "prompt": "Your appointment is tomorrow at nine."}
#: Targets, printed next to the figures.
TARGET_CPU_FACTOR = 2.0
TARGET_COMMANDS = 25.0
TARGET_QUEUE_S = 2.0
TARGET_PROBE_EXTRA_MS = 500.0
TARGET_RATE_ERROR = 0.02


@dataclass(frozen=True)
class Snapshot:
    """What a window is measured from: Redis's commands, the worker's CPU, its tasks run."""

    at: float
    commands: RedisCommands
    cpu_s: float
    tasks: Counter[str]
    own_commands: int

    @classmethod
    def take(cls, client: redis.Redis, pid: int, own_commands: int = 0) -> Snapshot:
        return cls(
            time.time(),
            RedisCommands.read(client),
            process_tree_cpu_s(pid),
            tasks_run(),
            own_commands,
        )


def tasks_run() -> Counter[str]:
    """Tasks the running worker has received, by name (Celery's worker stats)."""
    from cmvoice.worker import app

    replies = app.control.inspect(timeout=2.0).stats() or {}
    total: Counter[str] = Counter()
    for stats in replies.values():
        total.update(stats.get("total", {}))
    return total


@dataclass(frozen=True)
class Window:
    """The figures of one steady window."""

    label: str
    placed: int
    seconds: float
    limit_per_s: float
    limit_why: str
    cpu_ms: float
    commands: RedisCommands
    tasks: Counter[str]
    peak_queues: dict[str, int]
    peak_total: int
    rss_mib: float
    probes_ms: list[float]
    #: The probes' created -> sent in the ledger, and the most calls at once at the simulator.
    probes_ledger_ms: list[float] = field(default_factory=list)
    at_once: int = 0

    @property
    def placed_per_s(self) -> float:
        return self.placed / self.seconds

    @property
    def rate_error(self) -> float:
        return self.placed_per_s / self.limit_per_s - 1

    @property
    def commands_per_call(self) -> float:
        return self.commands.total / max(self.placed, 1)

    def lines(self) -> list[str]:
        tasks = ", ".join(f"{n} {c / max(self.placed, 1):.2f}" for n, c in self.tasks.items())
        queues = ", ".join(f"{q} {n}" for q, n in self.peak_queues.items())
        return [
            f"  {self.label}: placed {self.placed_per_s:.2f}/s against {self.limit_per_s:.2f}/s "
            f"({self.limit_why}) {self.rate_error:+.1%}; {self.placed} calls in "
            f"{self.seconds:.0f} s",
            f"    worker CPU {self.cpu_ms:.2f} ms/placed call; Redis "
            f"{self.commands_per_call:.1f} commands/placed call; peak RSS {self.rss_mib:.1f} MiB",
            f"    commands per placed call: {self.commands.split(max(self.placed, 1))}",
            f"    task messages per placed call: {tasks}",
            f"    peak queue length: {queues}; both {self.peak_total}; most calls in progress "
            f"at the simulator at once: {self.at_once}",
            f"    OTP probes enqueue -> POST: p50 {percentile(self.probes_ms, 0.5):.0f} ms, "
            f"p99 {percentile(self.probes_ms, 0.99):.0f} ms, max "
            f"{max(self.probes_ms, default=float('nan')):.0f} ms ({len(self.probes_ms)} probes); "
            f"created -> sent in the ledger p50 {percentile(self.probes_ledger_ms, 0.5):.0f} ms, "
            f"p99 {percentile(self.probes_ledger_ms, 0.99):.0f} ms",
        ]


class Bench:
    """The stack of the run, and one worker process at a time with the settings of a phase."""

    def __init__(self, stack: BenchStack, args: argparse.Namespace) -> None:
        self.stack = stack
        self.args = args
        self.client = redis.Redis.from_url(stack.redis.url)
        self.sim = stack.simulator("--time-scale", "1")
        self.base: dict[str, Any] = {
            "broker_url": stack.redis.url,
            "api_url": self.sim + "/voiceapi/v2",
            "callback_secret": "bench-secret",
            "calling_window": "00:00-24:00",
            "data_dir": str(stack.workdir / "data"),
        }
        if args.lead is not None:
            self.base["pacer_lead"] = args.lead
        self.base["callback_base_url"] = stack.receiver(self.base)
        self.numbers = (f"+3165{n:06d}0" for n in range(1_000_000))
        self.rows = stack.workdir / "campaign.csv"
        lines = ["callee", *(f"+3161{n:06d}0" for n in range(args.rows))]
        self.rows.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.worker: Any = None
        self.runs = 0

    def fresh_worker(self, **settings: Any) -> Runtime:
        """Stop the worker, empty Redis and the simulator, start a worker with ``settings``."""
        if self.worker is not None:
            self.stack.stop(self.worker)
        self.stack.empty_redis()
        requests.post(self.sim + "/_sim/reset", timeout=30).raise_for_status()
        values = {**self.base, **settings}
        runtime = Runtime.from_settings(Settings(**values))
        set_runtime(runtime)
        from cmvoice.worker import app

        self.runs += 1
        self.worker = f"pacing{self.runs}"
        args = [CMVOICE, "worker", "--beat", "--concurrency", str(self.args.concurrency)]
        args += ["--loglevel", "warning", "--hostname", f"{self.worker}@%h"]
        self.stack.start(self.worker, args, values)
        wait_until(lambda: app.control.ping(timeout=0.5), timeout_s=60, every_s=0)
        return runtime

    @property
    def pid(self) -> int:
        return self.stack.processes[self.worker].pid

    def idle_probes(self) -> list[float]:
        """The probes on the idle stack: the latency baseline."""
        self.fresh_worker(rate_limit=self.args.rate, max_concurrent_calls=self.args.slots[0])
        with Probes(self.args.probe_every, self.numbers) as probes:
            time.sleep(self.args.probe_every * (self.args.idle_probes + 0.5))
        wait_until(lambda: len(accepted_times(self.sim)[0]) >= len(probes.sent), timeout_s=30)
        return probes.latencies_ms(accepted_times(self.sim)[0])

    def burst(self) -> Window:
        """``--burst`` notifications with nothing binding, until their outcomes are recorded."""
        runtime = self.fresh_worker(rate_limit="100000/s", max_concurrent_calls=1_000_000)
        from cmvoice.producer import enqueue

        count = self.args.burst
        before = Snapshot.take(self.client, self.pid)
        for _ in range(count):
            enqueue({"callee": next(self.numbers), "caller": CALLER, "prompt": TEMPLATE["prompt"]})
        open_states = (CallState.QUEUED, CallState.DISPATCHING, CallState.PLACED)
        polls = 0

        def ended() -> bool:
            nonlocal polls
            polls += 1
            return not sum(runtime.ledger.count_in(state) for state in open_states)

        # Placed, then ended by their callbacks (the simulator runs in real time).
        wait_until(lambda: len(accepted_times(self.sim)[0]) >= count, timeout_s=120, every_s=0.5)
        wait_until(ended, timeout_s=120, every_s=0.25)
        after = Snapshot.take(self.client, self.pid)
        return Window(
            "unconstrained dispatch",
            count,
            after.at - before.at,
            float("inf"),
            "nothing binds",
            (after.cpu_s - before.cpu_s) * 1000 / count,
            after.commands.since(before.commands).without("zcard", polls * len(open_states)),
            after.tasks - before.tasks,
            {},
            0,
            peak_rss_mib(self.pid),
            [],
        )

    def campaign_round(self, slots: int) -> Window:
        """The campaign with ``slots`` concurrent calls, for ``--seconds``; its steady window."""
        runtime = self.fresh_worker(
            rate_limit=self.args.rate,
            max_concurrent_calls=slots,
            interactive_slots=self.args.interactive_slots,
        )
        from cmvoice.campaigns.enqueue import start_campaign

        queues = (DISPATCH_QUEUE, INTERACTIVE_QUEUE)
        with (
            QueueSampler(self.client, queues) as sampler,
            Probes(self.args.probe_every, self.numbers) as probes,
        ):
            started = time.time()
            enqueuing = threading.Thread(
                target=start_campaign,
                args=(runtime, self.rows, "notification"),
                kwargs={"template": TEMPLATE, "errors_path": self.stack.workdir / "errors.csv"},
            )
            enqueuing.start()
            time.sleep(max(started + self.args.warmup - time.time(), 0))
            enqueuing.join()
            before = Snapshot.take(self.client, self.pid, sampler.commands)
            time.sleep(max(started + self.args.seconds - time.time(), 0))
            after = Snapshot.take(self.client, self.pid, sampler.commands)
        accepted, lengths = accepted_times(self.sim)
        in_window = [iid for iid, at in accepted.items() if before.at <= at < after.at]
        probe_ids = {iid for iid, _ in probes.sent}
        campaign_lengths = [lengths[iid] for iid in in_window if iid not in probe_ids]
        limit, why = binding_limit(
            self.args.rate,
            runtime.settings.campaign_slot_limit,
            statistics.fmean(campaign_lengths or [1.0]),
            1 / self.args.probe_every,
        )
        return Window(
            f"{slots} slots",
            len(in_window),
            after.at - before.at,
            limit,
            why,
            (after.cpu_s - before.cpu_s) * 1000 / max(len(in_window), 1),
            after.commands.since(before.commands).without(
                "llen", after.own_commands - before.own_commands
            ),
            after.tasks - before.tasks,
            dict(sampler.peaks),
            sampler.peak_total,
            peak_rss_mib(self.pid),
            probes.latencies_ms(accepted, after=before.at),
            sent_ms(runtime, [iid for iid, at in probes.sent if at >= before.at]),
            most_at_once(accepted, lengths),
        )


def binding_limit(
    rate: str, campaign_slots: int, mean_length_s: float, probes_per_s: float
) -> tuple[float, str]:
    """Calls a second the round may place, and why: the account's rate, unless the campaigns'
    share of the slots binds first (their slots / a call's mean length); the probes then go on
    top, in the slots kept for interactive calls (within the rate)."""
    per_s = parse_rate(rate).per_second
    by_slots = campaign_slots / mean_length_s
    if by_slots >= per_s:
        return per_s, f"the rate {rate}"
    why = f"{campaign_slots} campaign slots / {mean_length_s:.2f} s a call"
    why += f" + {probes_per_s:g}/s probes"
    return min(by_slots + probes_per_s, per_s), why


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def summary(
    args: argparse.Namespace, idle: list[float], rounds: list[tuple[Window, Window]]
) -> None:
    """``rounds``: (the unconstrained burst, the campaign round right after it)."""
    idle_p99 = percentile(idle, 0.99)
    rate = parse_rate(args.rate).per_second
    queue_limit = TARGET_QUEUE_S * rate
    print(
        f"pacing: {args.rows:,}-row notification campaign at {args.rate}, simulator in real "
        f"time, {args.seconds:.0f} s a round (steady window after {args.warmup:.0f} s), "
        f"{args.rounds} round(s) per setting, pacer lead "
        f"{'default' if args.lead is None else f'{args.lead} s'}, on {os.cpu_count()} cores; "
        "medians over rounds"
    )
    print(
        f"  idle stack: OTP probe enqueue -> POST p50 {percentile(idle, 0.5):.0f} ms, p99 "
        f"{idle_p99:.0f} ms, max {max(idle, default=float('nan')):.0f} ms ({len(idle)} probes)"
    )
    bursts = [burst for burst, _ in rounds]
    print(
        f"  unconstrained dispatch ({args.burst} notifications, nothing binding, before each "
        f"round): worker CPU {median([b.cpu_ms for b in bursts]):.2f} ms/call, Redis "
        f"{median([b.commands_per_call for b in bursts]):.1f} commands/call"
    )
    for slots in args.slots:
        pairs = [(burst, w) for burst, w in rounds if w.label == f"{slots} slots"]
        mine = [w for _, w in pairs]
        error = median([w.rate_error for w in mine])
        cpu = median([w.cpu_ms for w in mine])
        cpu_factor = median([w.cpu_ms / burst.cpu_ms for burst, w in pairs])
        commands = median([w.commands_per_call for w in mine])
        queue = median([w.peak_total for w in mine])
        p99 = median([percentile(w.probes_ms, 0.99) for w in mine])
        print(f"  {slots} slots ({mine[0].limit_why}):")
        print(
            f"    placed {median([w.placed_per_s for w in mine]):.2f}/s against "
            f"{median([w.limit_per_s for w in mine]):.2f}/s: {error:+.1%} (target within "
            f"{TARGET_RATE_ERROR:.0%}: {verdict(abs(error) <= TARGET_RATE_ERROR)})"
        )
        print(
            f"    worker CPU {cpu:.2f} ms/placed call, {cpu_factor:.2f} x the burst before it "
            f"(target <= {TARGET_CPU_FACTOR:.0f} x: {verdict(cpu_factor <= TARGET_CPU_FACTOR)})"
        )
        print(
            f"    Redis {commands:.1f} commands/placed call (target <= {TARGET_COMMANDS:.0f}: "
            f"{verdict(commands <= TARGET_COMMANDS)})"
        )
        print(
            f"    peak dispatch queues {queue:.0f} messages (target <= {queue_limit:.0f}, "
            f"{TARGET_QUEUE_S:.0f} s of work: {verdict(queue <= queue_limit)})"
        )
        print(
            f"    OTP probe p99 {p99:.0f} ms (target <= idle p99 {idle_p99:.0f} + "
            f"{TARGET_PROBE_EXTRA_MS:.0f} ms: {verdict(p99 <= idle_p99 + TARGET_PROBE_EXTRA_MS)})"
        )
        print(f"    worker peak RSS {median([w.rss_mib for w in mine]):.1f} MiB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the campaign")
    parser.add_argument("--rate", default="10/s", help="CMVOICE_RATE_LIMIT")
    parser.add_argument(
        "--slots",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[50, 1000],
        help="CMVOICE_MAX_CONCURRENT_CALLS of each setting, comma-separated",
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="length of a round")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before the window")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of each setting")
    parser.add_argument("--probe-every", type=float, default=2.0, help="seconds between probes")
    parser.add_argument("--idle-probes", type=int, default=15, help="probes on the idle stack")
    parser.add_argument("--burst", type=int, default=300, help="calls of the unconstrained run")
    parser.add_argument("--concurrency", type=int, default=32, help="worker threads")
    parser.add_argument(
        "--interactive-slots",
        type=int,
        default=8,
        help="CMVOICE_INTERACTIVE_SLOTS: the probes' calls in progress at once, and some",
    )
    parser.add_argument(
        "--lead", type=float, default=None, help="CMVOICE_PACER_LEAD (default: the setting's)"
    )
    args = parser.parse_args(argv)
    with bench_stack() as stack:
        os.environ["CMVOICE_BROKER_URL"] = stack.redis.url
        bench = Bench(stack, args)
        idle = bench.idle_probes()
        rounds = []
        for _ in range(args.rounds):
            for slots in args.slots:
                burst = bench.burst()
                print("\n".join(burst.lines()[1:4]), flush=True)
                rounds.append((burst, bench.campaign_round(slots)))
                print("\n".join(rounds[-1][1].lines()), flush=True)
    summary(args, idle, rounds)


if __name__ == "__main__":
    main()
