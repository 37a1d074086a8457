"""``cmvoice dev``: starts Redis and the parts as child processes, watches them, stops them all."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

from rich.console import Console

from cmvoice.config import Settings
from cmvoice.dev import lifeline
from cmvoice.dev.console import DevConsole, summary_rows
from cmvoice.dev.health import DevStackError, check_ports, port_in_use, readiness_checks
from cmvoice.dev.plan import ChildSpec, DevOptions, DevPlan
from cmvoice.embedded_redis import EmbeddedRedis, is_answering
from cmvoice.privacy import redact_url
from cmvoice.runtime import Runtime
from cmvoice.worker import app as celery_app

if TYPE_CHECKING:
    from cmvoice.dev.demo import DemoReport

#: Seconds between two looks at the children (and at a Ctrl-C).
_TICK_S = 0.1
#: Seconds between two rounds of readiness checks.
_READY_POLL_S = 0.2
#: Seconds a log reader gets to print what its child wrote last.
_READER_JOIN_S = 2.0

T = TypeVar("T")


class Interrupted(Exception):
    """SIGINT (Ctrl-C) or SIGTERM asked ``cmvoice dev`` to stop."""


@dataclass
class Child:
    """One running part, in a process group of its own."""

    spec: ChildSpec
    process: subprocess.Popen[bytes]
    reader: threading.Thread
    ready: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def running(self) -> bool:
        return self.process.poll() is None


class DevStack:
    """Starts every part, streams their logs, watches them, and stops them all.

    Usage: ``DevStack(settings, options, console).run(body)``; ``run`` always stops what it
    started, whatever happens (Ctrl-C, SIGTERM, a part that dies, an exception). Children die
    with this process even when it is killed (``cmvoice.dev.lifeline``).
    """

    def __init__(self, settings: Settings, options: DevOptions, console: Console) -> None:
        self.options = options
        self.plan = DevPlan(settings, options)
        # The plan's: with the encryption key dev keeps when none is configured.
        self.settings = self.plan.settings
        self.out = DevConsole(console)
        self.children: list[Child] = []
        self.redis: EmbeddedRedis | None = None
        self.runtime: Runtime | None = None
        self.started_at = time.monotonic()
        self._signals = 0

    def say(self, message: str, style: str = "bold") -> None:
        self.out.say(message, style)

    # -- signals and waiting

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only count: the main thread notices within one tick. Nothing here may block.
        self._signals += 1

    @contextmanager
    def signals_handled(self) -> Iterator[None]:
        """SIGINT and SIGTERM ask for a clean stop instead of killing this process."""
        stop_signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in stop_signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def pause(self, seconds: float) -> None:
        """Wait ``seconds``; raise Interrupted on a stop request, DevStackError if a part died."""
        deadline = time.monotonic() + seconds
        while True:
            if self._signals:
                raise Interrupted
            self.check_children()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(_TICK_S, remaining))

    def check_children(self) -> None:
        if self.redis is not None and self.redis.process is not None:
            code = self.redis.process.poll()
            if code is not None:
                raise DevStackError(f"redis exited unexpectedly (exit code {code})")
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise DevStackError(
                    f"{child.name} exited unexpectedly (exit code {code}); see its log above"
                )

    # -- starting

    def start_redis(self) -> None:
        """The embedded Redis when no broker is configured; else check the configured one."""
        settings = self.settings
        if not settings.uses_embedded_redis:
            url = settings.effective_redis_url
            if url.startswith(("redis://", "rediss://", "unix://")) and not is_answering(url):
                raise DevStackError(
                    f"cannot reach Redis at {redact_url(url)}: start it, or unset "
                    "CMVOICE_BROKER_URL and CMVOICE_REDIS_URL to use an embedded Redis"
                )
            return
        url = settings.effective_broker_url
        if is_answering(url):
            self.say(f"using the Redis already running at {url}")
            return
        port = settings.embedded_redis_port
        if port_in_use(port):
            raise DevStackError(
                f"port {port} is in use by something that is not Redis; set "
                "CMVOICE_EMBEDDED_REDIS_PORT to a free port, or CMVOICE_BROKER_URL to a broker"
            )
        self.redis = EmbeddedRedis(
            port=port,
            data_dir=self.plan.data_dir / "redis",
            persistent=True,
            in_child=lifeline.die_with(os.getpid(), lifeline.REDIS_DEATH_SIGNAL),
        )
        self.say(f"starting an embedded Redis on {self.redis.url} (data in {self.redis.data_dir})")
        self.redis.start()

    def start_children(self, specs: list[ChildSpec]) -> None:
        # PR_SET_PDEATHSIG follows the thread that forks: the main thread lives as long as we do.
        assert threading.current_thread() is threading.main_thread(), "fork from the main thread"
        assert self.runtime is not None
        env = self.plan.shared_env(self.runtime.callback_secret)
        dev_pid = os.getpid()
        for spec in specs:
            # The same interpreter as ours (the children see the same installed cmvoice), run
            # through the launcher that ties the part's life to ours.
            argv = [sys.executable, "-m", lifeline.LAUNCHER, str(dev_pid), spec.module, *spec.args]
            process = subprocess.Popen(
                argv,
                env={**env, **spec.env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # A process group of its own: a Ctrl-C in the terminal reaches only us, so we
                # stop the parts in order; and killing the group takes the part's own children
                # (the worker's beat) with it.
                start_new_session=True,
                preexec_fn=lifeline.die_with(dev_pid, lifeline.PART_DEATH_SIGNAL),
            )
            assert process.stdout is not None
            reader = threading.Thread(
                target=self.out.stream,
                args=(spec.name, spec.style, process.stdout),
                name=f"log-{spec.name}",
                daemon=True,
            )
            self.children.append(Child(spec, process, reader))
            reader.start()

    def wait_until_ready(self) -> None:
        checks = readiness_checks(self.plan)
        deadline = time.monotonic() + self.options.startup_timeout_s
        while True:
            for child in self.children:
                if not child.ready and checks[child.name]():
                    child.ready = True
                    took = time.monotonic() - self.started_at
                    self.say(f"{child.name} is ready ({took:.1f} s)", style="green")
            waiting = [child.name for child in self.children if not child.ready]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise DevStackError(
                    f"not ready within {self.options.startup_timeout_s:g} s: "
                    f"{', '.join(waiting)}; see the log above"
                )
            self.pause(_READY_POLL_S)

    def start(self) -> None:
        self.started_at = time.monotonic()
        check_ports(self.plan)
        self.plan.data_dir.mkdir(parents=True, exist_ok=True)
        self.start_redis()
        self.runtime = Runtime.from_settings(self.settings)
        specs = self.plan.children()
        for stage in sorted({spec.stage for spec in specs}):
            self.start_children([spec for spec in specs if spec.stage == stage])
            self.wait_until_ready()

    # -- stopping

    def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after the timeout), then Redis, last."""
        running = [child for child in self.children if child.running]
        if running:
            self.say(f"stopping {', '.join(child.name for child in running)}")
        for child in running:
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + self.options.stop_timeout_s
        for child in running:
            while child.process.poll() is None:
                # A second Ctrl-C means: do not wait any longer.
                if time.monotonic() > deadline or self._signals > 1:
                    self.say(f"{child.name} did not stop in time; killing it", style="red")
                    _signal_group(child, signal.SIGKILL)
                    child.process.wait()
                    break
                time.sleep(_TICK_S)
        for child in self.children:
            # The leader is gone; whatever it left in its group (the beat process) goes too.
            while _group_alive(child) and time.monotonic() < deadline:
                time.sleep(_TICK_S)
            _signal_group(child, signal.SIGKILL)
        for child in self.children:
            child.reader.join(timeout=_READER_JOIN_S)
        # Our own connections go before the Redis they use.
        celery_app.close()
        if self.runtime is not None:
            self.runtime.close()
        if self.redis is not None:
            self.say("stopping redis")
            self.redis.stop()

    # -- running

    def run(self, body: Callable[[], T] | None = None) -> T | None:
        """Start, then run ``body`` (or wait for Ctrl-C); always stop. None when interrupted."""
        with self.signals_handled():
            try:
                self.start()
                took = time.monotonic() - self.started_at
                self.say(f"cmvoice dev is up ({took:.1f} s)", "bold green")
                self.out.table(summary_rows(self.plan, self._redis_data_dir()))
                self.warn_stranded_result_tasks()
                if body is not None:
                    return body()
                self.say("Ctrl-C stops everything. Send a call from another terminal:")
                self.say(
                    "  cmvoice send notification --callee +31612345678 --caller +31761234567 "
                    '--prompt "Hello from cmvoice"',
                    style="",
                )
                while True:
                    self.pause(1.0)
            except Interrupted:
                self.say("stop requested")
                return None
            finally:
                self.stop()

    def _redis_data_dir(self) -> str | None:
        return None if self.redis is None else str(self.redis.data_dir)

    def warn_stranded_result_tasks(self) -> None:
        stranded = self.plan.stranded_result_tasks
        if stranded:
            self.say(
                f"CMVOICE_RESULT_TASKS names {', '.join(stranded)}, but this worker does not "
                f"import their module: their messages wait in {self.settings.result_queue}. "
                "Pass --include MODULE to run them here.",
                style="yellow",
            )

    def demo(self) -> DemoReport:
        """Send the demo calls and wait for their outcomes (the body of ``--demo``)."""
        from cmvoice.dev.demo import run_demo

        assert self.runtime is not None
        self.say("demo: sending a notification, an OTP, a DTMF and an unanswered call")
        return run_demo(
            self.runtime,
            self.plan.simulator_url,
            timeout_s=self.options.demo_timeout_s,
            pause=self.pause,
        )


def run_dev(settings: Settings, options: DevOptions, console: Console) -> int:
    """``cmvoice dev`` and ``cmvoice dev --demo``; returns the exit code."""
    if options.demo and settings.product_token is not None:
        raise DevStackError(
            "--demo places calls through the simulator: unset CMVOICE_PRODUCT_TOKEN to run it "
            "(real calls to the demo's numbers are not what you want)"
        )
    stack = DevStack(settings, options, console)
    if not options.demo:
        stack.run()
        return 0
    report = stack.run(stack.demo)
    if report is None:
        console.print("demo interrupted")
        return 130
    # Piped (CI, a log file), rich would squeeze the table into 80 columns; a terminal has its own.
    wide = console if console.is_terminal else Console(width=max(console.width, 160))
    wide.print(report.table())
    if report.problems:
        for problem in report.problems:
            console.print(f"[red]demo failed:[/red] {problem}", soft_wrap=True, markup=True)
        return 1
    console.print(
        f"[green]demo: every call reached its final outcome in {report.elapsed_s:.1f} s; "
        "everything stopped[/green]"
    )
    return 0


def _signal_group(child: Child, signum: int) -> None:
    # The child leads its own group (start_new_session): its pid is the group's id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.process.pid, signum)


def _group_alive(child: Child) -> bool:
    try:
        os.killpg(child.process.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
