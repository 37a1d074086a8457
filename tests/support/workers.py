"""Celery workers: in this process (a thread pool), or ``cmvoice worker`` in a subprocess for
crash and scale tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from celery import Celery
from celery.worker import WorkController

CMVOICE = str(Path(sys.executable).parent / "cmvoice")


def worker_env(settings: dict[str, Any]) -> dict[str, str]:
    """The environment of a worker process: this one's, plus CMVOICE_ variables."""
    env = dict(os.environ)
    for name, value in settings.items():
        env[f"CMVOICE_{name.upper()}"] = str(value)
    return env


class _ThreadWorker(WorkController):
    """A worker that says when its consumer is ready (Celery's test worker waits for that
    without a timeout, so a worker that never starts would hang the suite)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.consuming = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer: Any) -> None:
        self.consuming.set()


@contextlib.contextmanager
def thread_worker(
    app: Celery,
    queues: Sequence[str],
    *,
    concurrency: int = 8,
    start_timeout_s: float = 30.0,
    stop_timeout_s: float = 30.0,
) -> Iterator[WorkController]:
    """A Celery worker (thread pool) in this process, consuming ``queues``, stopped on exit.

    A worker that does not start, or does not stop, fails its test with the stack of the
    worker's thread: the rest of the run goes on (Celery's own test worker would wait forever,
    or leave the stop flag set and so stop every later worker as soon as it starts).
    """
    from celery._state import _set_task_join_will_block
    from celery.contrib.testing.worker import setup_app_for_worker
    from celery.utils.nodenames import anon_nodename
    from celery.worker import state

    setup_app_for_worker(app, "WARNING", None)
    state.should_terminate = None
    worker = _ThreadWorker(
        app=app,
        hostname=anon_nodename(),
        pool="threads",
        concurrency=concurrency,
        queues=list(queues),
        loglevel="WARNING",
        logfile=None,
        ready_callback=None,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    thread = threading.Thread(target=worker.start, name="celery-worker", daemon=True)
    thread.start()
    try:
        if not worker.consuming.wait(start_timeout_s):
            raise AssertionError(
                f"the worker did not start consuming within {start_timeout_s:g} s; "
                f"its thread:\n{_stack_of(thread)}"
            )
        _set_task_join_will_block(False)
        yield worker
    finally:
        # Stop, and wake the consumer's event loop with a message: on RabbitMQ it sleeps
        # in poll() until its next timer before it sees the stop. Without a broker to send
        # it, the worker still stops, only later.
        state.should_terminate = 0
        with contextlib.suppress(Exception):
            app.control.broadcast("ping", destination=[worker.hostname], reply=False)
        thread.join(stop_timeout_s)
        stuck = _stack_of(thread) if thread.is_alive() else None
        state.should_terminate = None
    if stuck is not None:
        raise AssertionError(f"the worker did not stop within {stop_timeout_s:g} s:\n{stuck}")


def _stack_of(thread: threading.Thread) -> str:
    frame = sys._current_frames().get(thread.ident or -1)
    return "".join(traceback.format_stack(frame)) if frame is not None else "(thread ended)"


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
