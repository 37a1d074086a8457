"""One run of the fault suite: a faulty CM, a receiver and supervised workers, one of which is
SIGKILLed every few seconds, with a campaign going through them; and what the checks read back.

Every part is a child process (``cmvoice simulator``, ``receiver``, ``worker``, ``campaign``)
started with the run's settings only, so a run's broker is its own choice: the Redis of the
ledger, or a RabbitMQ vhost.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
import requests

from cmvoice.calls import CallRecord, CallState
from cmvoice.config import Settings
from cmvoice.embedded_redis import EmbeddedRedis
from cmvoice.ledger import CallLedger
from tests.support.stack import CALLER, wait_for
from tests.support.workers import CMVOICE

#: The simulator's seed: the same faults at the same POSTs in every run.
SEED = 20261126
REPO = Path(__file__).resolve().parents[2]
#: Settings every run shares: short timeouts, so that each recovery path ends within seconds.
BASE_SETTINGS: dict[str, Any] = {
    "callback_secret": "fault-suite-secret",
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
}
#: What the simulator does wrong: 20% 503, 5% 429 and 2% read timeouts; it drops 5% of its
#: callbacks and sends 5% twice.
SIMULATOR_FAULTS = [
    *("--fail-503", "0.2", "--fail-429", "0.05", "--timeout-rate", "0.02", "--hold-s", "2"),
    *("--drop-callbacks", "0.05", "--duplicate-callbacks", "0.05"),
]
#: Seconds between two SIGKILLs of the victim worker.
DEFAULT_KILL_EVERY_S = 3.0


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

    def run(self, *args: str) -> str:
        """A ``cmvoice`` command to its end; its standard output."""
        done = subprocess.run(
            [CMVOICE, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout

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


def write_campaign(path: Path, rows: int) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["callee", "prompt"])
        for n in range(rows):
            # The last two digits pick the simulator's outcome: ..09 not answered, ..11 failed,
            # ..12 rejected, anything else answered.
            writer.writerow([f"+3164{n:07d}", f"Fault suite call {n}."])


class FaultRun:
    """The parts of one run, and the ledger they share.

    Args:
        workdir: where the logs, the campaign file and the report go.
        broker: ``broker_url`` (and ``redis_url`` when the broker is not the ledger's Redis).
        result_task: the application's result task the workers run (tests.support.result_tasks).
        settings: more settings, over BASE_SETTINGS.
    """

    def __init__(
        self, workdir: Path, broker: dict[str, Any], *, result_task: str, **settings: Any
    ) -> None:
        sim_port, receiver_port = _free_ports(2)
        self.workdir = workdir
        self.sim_url = f"http://127.0.0.1:{sim_port}"
        self.receiver_url = f"http://127.0.0.1:{receiver_port}"
        self.settings: dict[str, Any] = {
            **BASE_SETTINGS,
            **broker,
            "api_url": self.sim_url + "/voiceapi/v2",
            "callback_base_url": self.receiver_url,
            "data_dir": workdir / "data",
            "result_tasks": result_task,
            **settings,
        }
        self.parts = Parts(workdir, self.settings)
        self.redis = redis.Redis.from_url(Settings(**self.settings).effective_redis_url)
        self.ledger = CallLedger(self.redis)
        self.kills = 0
        #: Process ids of the workers that died: killed, or exited by themselves.
        self.dead_pids: set[int] = set()
        #: Exits of workers that were not killed on purpose (restarted by the supervisor).
        self.unexpected_exits: Counter[str] = Counter()
        #: When the ledger's Redis was down: (stopped, started again), epoch seconds.
        self.redis_outages: list[tuple[float, float]] = []
        self._workers: dict[str, tuple[list[str], subprocess.Popen[bytes]]] = {}
        self._stop = threading.Event()
        self._killer: threading.Thread | None = None
        self._ports = (sim_port, receiver_port)

    # -- the parts
    def start(self) -> None:
        """The simulator, the receiver and two supervised workers; returns once they answer."""
        sim_port, receiver_port = self._ports
        simulator = [CMVOICE, "simulator", "--port", str(sim_port), "--time-scale", "0.001"]
        self.parts.start("simulator", [*simulator, "--seed", str(SEED), *SIMULATOR_FAULTS])
        self.parts.start(
            "receiver",
            [CMVOICE, "receiver", "--port", str(receiver_port), "--log-level", "warning"],
        )
        include = ["--include", "tests.support.result_tasks"]
        # Workers run supervised, as in production (compose: restart: unless-stopped): one
        # that exits is started again. The victim is SIGKILLed every few seconds; the stable
        # one runs beat and exits only if something breaks it (celery/kombu can give up when
        # Redis goes away).
        for name, extra in (("stable", ["--beat"]), ("victim", [])):
            args = [CMVOICE, "worker", "-c", "16", *extra, "--hostname", f"{name}@%h", *include]
            self._workers[name] = (args, self.parts.start(name, args))
        threading.Thread(target=self._supervise, daemon=True).start()
        wait_for(
            lambda: (
                http_up(self.sim_url + "/_sim/health") and http_up(self.receiver_url + "/healthz")
            ),
            30,
        )

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            for name, (args, process) in list(self._workers.items()):
                if process.poll() is not None:
                    self.dead_pids.add(process.pid)
                    if name != "victim":
                        self.unexpected_exits[name] += 1
                    self._workers[name] = (args, self.parts.start(name, args))

    def kill_victim_every(self, interval_s: float = DEFAULT_KILL_EVERY_S) -> None:
        """SIGKILL the victim worker every ``interval_s`` until ``stop_killing()``."""

        def killer() -> None:
            while not self._stop.wait(interval_s):
                victim = self._workers["victim"][1]
                victim.kill()
                victim.wait()
                self.kills += 1
                self.dead_pids.add(victim.pid)

        self._killer = threading.Thread(target=killer, daemon=True)
        self._killer.start()

    def restart_redis(self, server: EmbeddedRedis, down_s: float = 1.0) -> None:
        """Stop the ledger's Redis for ``down_s``, then start it again on its own data."""
        stopped = time.time()
        server.stop()
        time.sleep(down_s)
        server.start()
        self.redis_outages.append((stopped, time.time()))

    def stop_killing(self) -> None:
        self._stop.set()
        if self._killer is not None:
            self._killer.join(10)

    def stop(self) -> None:
        self._stop.set()
        self.parts.stop()
        self.redis.close()

    # -- the campaign
    def start_campaign(self, rows: int) -> tuple[str, list[str]]:
        """A notification campaign of ``rows`` numbers; its id and its calls' ids."""
        campaign_file = self.workdir / "calls.csv"
        write_campaign(campaign_file, rows)
        template = self.workdir / "template.json"
        template.write_text(json.dumps({"caller": CALLER, "prompt-type": "TTS"}))
        out = self.parts.run(
            "campaign",
            "start",
            str(campaign_file),
            "--kind",
            "notification",
            "--template",
            str(template),
            "--errors",
            str(self.workdir / "errors.csv"),
        )
        campaign_id = out.split()[0]
        return campaign_id, self._call_ids(campaign_id)

    def _call_ids(self, campaign_id: str) -> list[str]:
        from cmvoice.campaigns.store import CampaignStore
        from cmvoice.runtime import Runtime

        runtime = Runtime.from_settings(Settings(**self.settings))
        try:
            chunks = CampaignStore(runtime).call_chunks(campaign_id)
            return [iid for chunk in chunks for iid, _ in chunk]
        finally:
            runtime.close()

    def records(self, ids: list[str]) -> list[CallRecord]:
        records = [self.ledger.get(iid) for iid in ids]
        return [record for record in records if record is not None]

    def wait_until_terminal(self, ids: list[str], timeout_s: float) -> None:
        """Until every call is in a terminal state; else fail with the stuck states and the
        end of the stable worker's log."""

        def all_terminal() -> bool:
            records = self.records(ids)
            return len(records) == len(ids) and all(r.state.is_terminal for r in records)

        try:
            wait_for(all_terminal, timeout_s=timeout_s, interval_s=1.0)
        except AssertionError:
            stuck = Counter(r.state.value for r in self.records(ids) if not r.state.is_terminal)
            log = (self.workdir / "stable.log").read_text(errors="replace")[-3000:]
            message = f"not terminal: {dict(stuck)}; stable worker's log:\n{log}"
            raise AssertionError(message) from None

    def finished_ids(self, ids: list[str]) -> set[str]:
        return {r.instruction_id for r in self.records(ids) if r.state is CallState.FINISHED}

    def states(self, ids: list[str]) -> dict[str, int]:
        return dict(Counter(r.state.value for r in self.records(ids)))

    def campaign_counts(self, campaign_id: str) -> dict[str, int]:
        """The campaign's counters: states, and result codes (``code:10``...)."""
        raw = self.redis.hgetall(self.ledger.campaign_key(campaign_id) + ":counts")
        return {k.decode(): int(v) for k, v in raw.items()}

    def placements(self) -> dict[str, int]:
        """How many times the simulator placed each instruction id."""
        placed = requests.get(self.sim_url + "/_sim/calls", timeout=30).json()
        per_id: dict[str, int] = placed["per-instruction-id"]
        return per_id

    def simulator_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = requests.get(self.sim_url + "/_sim/stats", timeout=30).json()
        return stats

    def report_rows(self, campaign_id: str) -> list[dict[str, str]]:
        report = self.workdir / "report.csv"
        self.parts.run("campaign", "report", campaign_id, "--out", str(report))
        with report.open() as file:
            return list(csv.DictReader(file))


def _free_ports(count: int) -> list[int]:
    from cmvoice.embedded_redis import free_port

    return [free_port() for _ in range(count)]
