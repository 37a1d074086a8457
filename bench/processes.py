"""Child processes for benchmarks: the simulator, the receiver and workers, on free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from cmvoice.embedded_redis import EmbeddedRedis, free_port

CMVOICE = str(Path(sys.executable).parent / "cmvoice")
SIM_TOKEN = "00000000-0000-0000-0000-000000000000"


def env_with(settings: dict[str, Any]) -> dict[str, str]:
    """This environment without any CMVOICE_ variable, plus ``settings`` as CMVOICE_ ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMVOICE_")}
    env.update({f"CMVOICE_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


def parents() -> dict[int, int]:
    """The parent of every process (Linux)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue  # ended meanwhile
            # The command name (field 2) may hold spaces: split after its closing parenthesis.
            found[int(entry.name)] = int(text[text.rindex(")") + 2 :].split()[1])
    return found


def descendants(pid: int) -> set[int]:
    """The processes below ``pid``, at any depth."""
    by_parent = parents()
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = {child for child, ppid in by_parent.items() if ppid == parent}
        frontier += children - found
        found |= children
    return found


def peak_rss_mib(pid: int) -> float:
    """The high-water mark of a process's resident memory (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class BenchStack:
    """A private Redis plus whatever child processes a benchmark started."""

    redis: EmbeddedRedis
    workdir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def start(
        self,
        name: str,
        args: list[str],
        settings: dict[str, Any],
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        env = {**env_with(settings), **(extra_env or {})}
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def stop(self, name: str) -> None:
        """Stop one child (SIGTERM, then SIGKILL after 20 s) and forget it; processes it
        started (``--beat`` runs beat as one) that outlive it are killed too."""
        process = self.processes.pop(name)
        below = descendants(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for pid in below & descendants(1):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def empty_redis(self) -> None:
        """Every key of the private Redis goes but kombu's queue bindings: a producer of this
        process declared those once and would not declare them again."""
        client = redis.Redis.from_url(self.redis.url)
        for key in client.scan_iter(count=1000):
            if not key.startswith(b"_kombu.binding."):
                client.delete(key)
        client.close()

    def simulator(self, *extra: str) -> str:
        port = free_port()
        self.start("simulator", [CMVOICE, "simulator", "--port", str(port), *extra], {})
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/_sim/health")
        self.urls["simulator"] = url
        return url

    def receiver(self, settings: dict[str, Any]) -> str:
        port = free_port()
        args = [CMVOICE, "receiver", "--port", str(port), "--log-level", "warning"]
        self.start("receiver", args, settings)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz")
        self.urls["receiver"] = url
        return url

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def bench_stack() -> Iterator[BenchStack]:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cmvoice-bench-")))
        redis_server = stack.enter_context(
            EmbeddedRedis(data_dir=workdir / "redis", persistent=False)
        )
        bench = BenchStack(redis=redis_server, workdir=workdir)
        try:
            yield bench
        finally:
            bench.stop_all()
