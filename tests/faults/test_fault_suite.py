"""The fault suite: a 2,000-call campaign through a faulty CM, killed workers and a Redis restart.

The simulator answers 20% 503, 5% 429 and 2% read timeouts, drops 5% of its callbacks and
sends 5% twice, with a fixed seed. Meanwhile one worker process is SIGKILLed every few seconds
and restarted, and Redis (append-only file on) is restarted once. At the end every call must be
in a terminal state, none placed twice, the campaign's counters equal to the ledger, no outcome
delivered twice, and the report must hold every row.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from cmvoice.calls import CallState
from cmvoice.config import Settings
from cmvoice.embedded_redis import EmbeddedRedis, free_port
from cmvoice.ledger import CallLedger
from tests.support.stack import CALLER, wait_for
from tests.support.workers import CMVOICE

ROWS = 2000
SEED = 20261126
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def http_up(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.ConnectionError:
        return False


class Parts:
    """The child processes of the suite, started with one environment."""

    def __init__(self, workdir: Path, settings: dict[str, Any]) -> None:
        self.workdir = workdir
        self.settings = settings
        self.children: list[subprocess.Popen[bytes]] = []

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CMVOICE_")}
        env.update({f"CMVOICE_{k.upper()}": str(v) for k, v in self.settings.items()})
        env["PYTHONPATH"] = str(REPO)
        return env

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        child = subprocess.Popen(args, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        self.children.append(child)
        return child

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@pytest.fixture
def fault_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(port=free_port(), data_dir=tmp_path / "redis", persistent=True)
    with server:
        yield server


def write_campaign(path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["callee", "prompt"])
        for n in range(ROWS):
            # The last two digits pick the simulator's outcome: ..09 not answered, ..11 failed,
            # ..12 rejected, anything else answered.
            writer.writerow([f"+3164{n:07d}", f"Fault suite call {n}."])


def test_a_campaign_through_faults_crashes_and_a_redis_restart_loses_and_repeats_nothing(
    tmp_path: Path, fault_redis: EmbeddedRedis
) -> None:
    sim_port, receiver_port = free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    receiver = f"http://127.0.0.1:{receiver_port}"
    settings: dict[str, Any] = {
        "broker_url": fault_redis.url,
        "api_url": sim + "/voiceapi/v2",
        "callback_base_url": receiver,
        "callback_secret": "fault-suite-secret",
        "data_dir": tmp_path / "data",
        "rate_limit": "400/s",
        "max_concurrent_calls": 100000,
        "http_timeout": 1,
        "connect_timeout": 1,
        "dispatch_lease": 3,
        "unknown_timeout": 6,
        "callback_timeout": 10,
        "requeue_grace": 3,
        "reconcile_interval": 1,
        "retry_backoff_base": 0.1,
        "retry_backoff_max": 2,
        "max_dispatch_retries": 25,
        "redial_max_attempts": 1,
        "result_tasks": "tests.record_outcome",
        # Deliveries a killed worker lost are published again this soon.
        "outbox_timeout": 5,
    }
    parts = Parts(tmp_path, settings)
    faults = ["--fail-503", "0.2", "--fail-429", "0.05", "--timeout-rate", "0.02"]
    faults += ["--hold-s", "2", "--drop-callbacks", "0.05", "--duplicate-callbacks", "0.05"]
    parts.start(
        "simulator",
        [
            CMVOICE,
            "simulator",
            "--port",
            str(sim_port),
            "--time-scale",
            "0.001",
            "--seed",
            str(SEED),
            *faults,
        ],
    )
    parts.start(
        "receiver", [CMVOICE, "receiver", "--port", str(receiver_port), "--log-level", "warning"]
    )
    include = ["--include", "tests.support.result_tasks"]
    stable_args = [CMVOICE, "worker", "-c", "16", "--beat", "--hostname", "stable@%h", *include]
    victim_args = [CMVOICE, "worker", "-c", "16", "--hostname", "victim@%h", *include]
    # Workers run supervised, as in production (compose: restart: unless-stopped): one that
    # exits is started again. The victim is SIGKILLed every 3 s; the stable one runs beat and
    # exits only if something breaks it (celery/kombu can give up when Redis goes away).
    workers = {
        "stable": (stable_args, parts.start("stable", stable_args)),
        "victim": (victim_args, parts.start("victim", victim_args)),
    }
    kills = 0
    unexpected_exits: Counter[str] = Counter()
    stop_killing = threading.Event()

    def supervise() -> None:
        while not stop_killing.wait(0.2):
            for name, (args, process) in list(workers.items()):
                if process.poll() is not None:
                    if name != "victim":
                        unexpected_exits[name] += 1
                    workers[name] = (args, parts.start(name, args))

    def killer() -> None:
        nonlocal kills
        while not stop_killing.wait(3.0):
            victim = workers["victim"][1]
            victim.kill()
            victim.wait()
            kills += 1

    threading.Thread(target=supervise, daemon=True).start()

    campaign_file = tmp_path / "calls.csv"
    write_campaign(campaign_file)
    (tmp_path / "template.json").write_text(json.dumps({"caller": CALLER, "prompt-type": "TTS"}))
    client = redis.Redis.from_url(fault_redis.url)
    ledger = CallLedger(client)
    try:
        wait_for(lambda: http_up(sim + "/_sim/health") and http_up(receiver + "/healthz"), 30)
        started = subprocess.run(
            [
                CMVOICE,
                "campaign",
                "start",
                str(campaign_file),
                "--kind",
                "notification",
                "--template",
                str(tmp_path / "template.json"),
                "--errors",
                str(tmp_path / "errors.csv"),
            ],
            env=parts.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        campaign_id = started.stdout.split()[0]
        kill_thread = threading.Thread(target=killer, daemon=True)
        kill_thread.start()

        # Redis goes down once, mid-campaign, and comes back with its append-only file.
        time.sleep(5)
        fault_redis.stop()
        time.sleep(1)
        fault_redis.start()

        ids = [iid for chunk in _call_chunks(settings, campaign_id) for iid, _ in chunk]
        assert len(ids) == ROWS

        def all_terminal() -> bool:
            states = [ledger.get(iid) for iid in ids]
            return all(r is not None and r.state.is_terminal for r in states)

        try:
            wait_for(all_terminal, timeout_s=240, interval_s=1.0)
        except AssertionError:
            stuck = Counter(
                r.state.value for i in ids if (r := ledger.get(i)) and not r.state.is_terminal
            )
            beat_log = (tmp_path / "stable.log").read_text(errors="replace")[-3000:]
            raise AssertionError(
                f"not terminal: {dict(stuck)}; stable worker log:\n{beat_log}"
            ) from None
        stop_killing.set()
        kill_thread.join(10)

        def finished_ids() -> set[str]:
            return {i for i in ids if ledger.get(i).state is CallState.FINISHED}

        def deliveries() -> Counter[str]:
            # Each outcome the application's task processed, by call.
            runs = [json.loads(o) for o in client.lrange("test:outcomes", 0, -1)]
            return Counter(run["instruction_id"] for run in runs)

        # A message a killed worker lost (kombu's Redis transport pops a message before it
        # records it as unacknowledged) is published again: handle_result from the callback
        # inbox, the outcome from the outbox, until the result task confirms it.
        def undelivered() -> set[str]:
            return finished_ids() - set(deliveries())

        with contextlib.suppress(AssertionError):
            wait_for(lambda: not undelivered(), timeout_s=90, interval_s=1.0)
        lost = undelivered()
        assert not lost, (
            f"{len(lost)} finished calls without an outcome after {kills} kills "
            f"(e.g. {sorted(lost)[:3]}); {client.llen('cmvoice.outcomes')} messages waiting, "
            f"{client.zcard('cmvoice:outbox')} deliveries unconfirmed"
        )
        # and none processed twice, whatever was delivered twice
        processed = {k.decode(): int(n) for k, n in client.hgetall("test:processed").items()}
        twice = {d: n for d, n in processed.items() if n > 1}
        assert not twice, f"outcomes processed more than once: {twice}"

        # Then: every call terminal, none placed twice
        records = [ledger.get(iid) for iid in ids]
        states = Counter(r.state.value for r in records if r)
        placed = requests.get(sim + "/_sim/calls", timeout=30).json()
        per_id: dict[str, int] = placed["per-instruction-id"]
        twice = {iid: n for iid, n in per_id.items() if n > 1}
        assert not twice, f"placed more than once: {twice}"
        # the campaign's counters equal the ledger
        counts = {
            k.decode(): int(v)
            for k, v in client.hgetall(ledger.campaign_key(campaign_id) + ":counts").items()
        }
        assert {s: n for s, n in counts.items() if not s.startswith("code:") and n} == dict(states)
        # no callback handled twice: exactly one outcome per finished call
        delivered = deliveries()
        assert all(n == 1 for n in delivered.values()), delivered.most_common(3)
        assert set(delivered) <= finished_ids()
        outcomes = list(delivered)
        # the report accounts for every row
        report = tmp_path / "report.csv"
        subprocess.run(
            [CMVOICE, "campaign", "report", campaign_id, "--out", str(report)],
            env=parts.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        with report.open() as file:
            rows = list(csv.DictReader(file))
        assert len(rows) == ROWS
        stats = requests.get(sim + "/_sim/stats", timeout=30).json()
        print(
            f"\nfault suite: {ROWS} calls, {kills} worker kills, 1 Redis restart, "
            f"other worker exits restarted by the supervisor: {dict(unexpected_exits)}"
        )
        print(f"  final states       : {dict(states)}")
        print(
            f"  result codes       : { {k: v for k, v in counts.items() if k.startswith('code:')} }"
        )
        print(f"  CM answered        : {stats['requests']['by-status']}")
        print(f"  faults injected    : {stats['requests'].get('faults-injected')}")
        print(f"  callbacks          : {stats.get('callbacks')}")
        print(f"  placed at CM       : {len(per_id)} calls, none twice")
        print(
            f"  outcomes processed : {len(outcomes)} of {len(finished_ids())} finished, none "
            f"lost, none twice ({sum(processed.values())} processings)"
        )
    finally:
        stop_killing.set()
        parts.stop()
        client.close()


def _call_chunks(settings: dict[str, Any], campaign_id: str) -> Iterator[list[tuple[str, int]]]:
    from cmvoice.campaigns.store import CampaignStore
    from cmvoice.runtime import Runtime

    runtime = Runtime.from_settings(Settings(**settings))
    try:
        yield from CampaignStore(runtime).call_chunks(campaign_id)
    finally:
        runtime.close()
