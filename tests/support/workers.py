"""Celery workers: in this process (a thread pool), or ``cmvoice worker`` in a subprocess for
crash and scale tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from celery import Celery

CMVOICE = str(Path(sys.executable).parent / "cmvoice")


def worker_env(settings: dict[str, Any]) -> dict[str, str]:
    """The environment of a worker process: this one's, plus CMVOICE_ variables."""
    env = dict(os.environ)
    for name, value in settings.items():
        env[f"CMVOICE_{name.upper()}"] = str(value)
    return env


@contextlib.contextmanager
def thread_worker(app: Celery, queues: Sequence[str], *, concurrency: int = 8) -> Iterator[Any]:
    """A Celery worker (thread pool) in this process, consuming ``queues``, stopped on exit."""
    from celery.contrib.testing.worker import start_worker
    from celery.worker import state

    with start_worker(
        app,
        pool="threads",
        concurrency=concurrency,
        perform_ping_check=False,
        queues=list(queues),
        shutdown_timeout=30,
        loglevel="WARNING",
    ) as running:
        try:
            yield running
        finally:
            # Stop, and wake the consumer's event loop with a message: on RabbitMQ it sleeps
            # in poll() until its next timer, up to 10 s, before it sees the stop. Without a
            # broker to send it, the worker still stops, only later.
            state.should_terminate = 0
            with contextlib.suppress(Exception):
                app.control.broadcast("ping", destination=[running.hostname], reply=False)


class WorkerProcess:
    """``cmvoice worker`` as a child process; ``kill()`` is a SIGKILL, as a crash would be."""

    def __init__(
        self,
        settings: dict[str, Any],
        log_path: Path,
        *,
        concurrency: int = 8,
        name: str = "w",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.log_path = log_path
        self.name = name
        args = [CMVOICE, "worker", "--concurrency", str(concurrency), "--loglevel", "info"]
        args += ["--hostname", f"{name}@%h", "--without-gossip", "--without-mingle", *extra_args]
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            args, env=worker_env(settings), stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, app: Celery, timeout_s: float = 20.0) -> None:
        """Return once the worker answers a ping over the broker."""
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker {self.name} exited: {self.log_path.read_text()}")
            replies = app.control.ping(timeout=0.5) or []
            if any(self.name in str(reply) for reply in replies):
                return
        raise AssertionError(f"worker {self.name} not ready: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
