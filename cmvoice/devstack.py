"""``cmvoice dev``: Redis, the simulator, the receiver, a worker and Flower as child processes."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TypeVar

import requests
from rich.console import Console
from rich.text import Text

from cmvoice.config import DEFAULT_RECEIVER_PORT, Settings
from cmvoice.demo import RECORD_OUTCOME_TASK, DemoReport, run_demo
from cmvoice.embedded_redis import EmbeddedRedis, is_answering
from cmvoice.errors import CmVoiceError
from cmvoice.privacy import redact_url
from cmvoice.runtime import Runtime
from cmvoice.simulator.config import DEFAULT_PORT as DEFAULT_SIMULATOR_PORT
from cmvoice.worker import ALL_QUEUES
from cmvoice.worker import app as celery_app

#: Flower's own default port.
DEFAULT_FLOWER_PORT = 5555
#: Where every part listens: this machine only.
HOST = "127.0.0.1"
#: Seconds the parts get to answer their health checks.
DEFAULT_STARTUP_TIMEOUT_S = 60.0
#: Seconds a part gets to stop after SIGTERM before it is killed.
DEFAULT_STOP_TIMEOUT_S = 10.0
#: Seconds the demo waits for the final outcomes of its calls.
DEFAULT_DEMO_TIMEOUT_S = 60.0
#: Simulated time runs this much faster in the demo: a 60 s ring takes 3 s.
DEMO_TIME_SCALE = 0.05
#: Redial policy of the demo, unless the user set one: a quick second try, then give up.
DEMO_REDIAL_DELAY = "2s"
DEMO_REDIAL_MAX_ATTEMPTS = 2
#: Worker threads: plenty for a laptop, few enough for a 2-core machine.
DEV_WORKER_CONCURRENCY = 8
#: Seconds between two looks at the children (and at a Ctrl-C).
_TICK_S = 0.1

T = TypeVar("T")


class DevStackError(CmVoiceError):
    """A part of ``cmvoice dev`` could not start, or stopped when it should not have."""


class Interrupted(Exception):
    """SIGINT (Ctrl-C) or SIGTERM asked ``cmvoice dev`` to stop."""


@dataclass(frozen=True)
class DevOptions:
    """The options of ``cmvoice dev``."""

    receiver_port: int = DEFAULT_RECEIVER_PORT
    simulator_port: int = DEFAULT_SIMULATOR_PORT
    flower_port: int = DEFAULT_FLOWER_PORT
    data_dir: Path = Path(".cmvoice")
    time_scale: float = 1.0
    demo: bool = False
    demo_timeout_s: float = DEFAULT_DEMO_TIMEOUT_S
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S
    stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S


@dataclass
class Child:
    """One part, run as a child process in a process group of its own."""

    name: str
    argv: list[str]
    style: str
    #: Variables for this child only, on top of the shared environment.
    env: dict[str, str] = field(default_factory=dict)
    #: Children start stage by stage; a stage starts once the ones before it are ready.
    stage: int = 0
    process: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None
    ready: bool = False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when something already listens on ``host:port`` (or holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the servers that will bind it: a port left in TIME_WAIT is free, a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _python_m(module: str, *args: str) -> list[str]:
    # The same interpreter as ours: the children see the same installed cmvoice.
    return [sys.executable, "-m", module, *args]


class DevStack:
    """Starts every part, streams their logs, watches them, and stops them all.

    Usage: ``DevStack(settings, options, console).run(body)``; ``run`` always stops what it
    started, whatever happens (Ctrl-C, SIGTERM, a part that dies, an exception).
    """

    def __init__(self, settings: Settings, options: DevOptions, console: Console) -> None:
        self.settings = settings
        self.options = options
        self.console = console
        self.data_dir = options.data_dir.resolve()
        self.uses_simulator = settings.product_token is None
        self.children: list[Child] = []
        self.redis: EmbeddedRedis | None = None
        self.runtime: Runtime | None = None
        self.worker_name = f"cmvoice-dev-{os.getpid()}@{socket.gethostname()}"
        self.flower_user = settings.flower_user
        password = settings.flower_password
        self.flower_password_generated = password is None
        self.flower_password = (
            secrets.token_urlsafe(12) if password is None else password.get_secret_value()
        )
        self.started_at = time.monotonic()
        self._signals = 0
        self._print_lock = threading.Lock()

    # -- where things are

    @property
    def receiver_url(self) -> str:
        return f"http://{HOST}:{self.options.receiver_port}"

    @property
    def simulator_url(self) -> str:
        return f"http://{HOST}:{self.options.simulator_port}"

    @property
    def flower_url(self) -> str:
        return f"http://{HOST}:{self.options.flower_port}"

    @property
    def api_url(self) -> str:
        return f"{self.simulator_url}/voiceapi/v2" if self.uses_simulator else self.settings.api_url

    @property
    def callback_base_url(self) -> str:
        # With real CM, a callback URL the user set (a public tunnel) is kept; CM cannot reach
        # 127.0.0.1. The simulator runs here, so it always posts to the local receiver.
        user_set = "callback_base_url" in self.settings.model_fields_set
        if not self.uses_simulator and user_set:
            return self.settings.callback_base_url
        return self.receiver_url

    # -- output

    def say(self, message: str, style: str = "bold") -> None:
        self._line("dev", "bold", Text(message, style=style))

    def _line(self, name: str, style: str, text: Text) -> None:
        line = Text.assemble((f"{name:>9} | ", style), text)
        with self._print_lock:
            # soft_wrap: long log lines are not cut at 80 columns when the output is a pipe.
            self.console.print(line, soft_wrap=True, highlight=False)

    def _stream(self, child: Child, stream: IO[bytes]) -> None:
        """Print a child's output line by line, prefixed by its name (one thread per child)."""
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", errors="replace").rstrip()
            if text:
                self._line(child.name, child.style, Text(text))
        stream.close()

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
            if child.process is not None:
                code = child.process.poll()
                if code is not None:
                    raise DevStackError(
                        f"{child.name} exited unexpectedly (exit code {code}); see its log above"
                    )

    # -- starting

    def check_ports(self) -> None:
        """Fail before starting anything when a port is taken, naming the option that moves it."""
        wanted = [(self.options.receiver_port, "--receiver-port", "the receiver")]
        if self.uses_simulator:
            wanted.append((self.options.simulator_port, "--simulator-port", "the simulator"))
        wanted.append((self.options.flower_port, "--flower-port", "Flower"))
        ports = [port for port, _, _ in wanted]
        for port, option, part in wanted:
            if ports.count(port) > 1:
                raise DevStackError(f"port {port} is given to two parts; change {option}")
            if port_in_use(port):
                raise DevStackError(
                    f"port {port} is already in use on {HOST}, so {part} cannot listen there; "
                    f"stop what uses it or pick another port with {option}"
                )

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
        self.redis = EmbeddedRedis(port=port, data_dir=self.data_dir / "redis", persistent=True)
        self.say(f"starting an embedded Redis on {self.redis.url} (data in {self.redis.data_dir})")
        self.redis.start()

    def shared_env(self) -> dict[str, str]:
        """The environment of every child: ours, plus what makes the parts find each other."""
        settings = self.settings
        assert self.runtime is not None
        env = dict(os.environ)
        env.update(
            {
                "CMVOICE_BROKER_URL": settings.effective_broker_url,
                "CMVOICE_DATA_DIR": str(self.data_dir),
                "CMVOICE_API_URL": self.api_url,
                "CMVOICE_CALLBACK_BASE_URL": self.callback_base_url,
                # The configured secret, or the one generated and kept in Redis: the worker
                # signs with it and the receiver checks with it, so they must agree.
                "CMVOICE_CALLBACK_SECRET": self.runtime.callback_secret,
                # Logs must reach us line by line, not in 8 KiB blocks.
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.options.demo:
            # The demo's unanswered call is redialed quickly, unless the user chose a policy.
            if "redial_delay" not in settings.model_fields_set:
                env["CMVOICE_REDIAL_DELAY"] = DEMO_REDIAL_DELAY
            if "redial_max_attempts" not in settings.model_fields_set:
                env["CMVOICE_REDIAL_MAX_ATTEMPTS"] = str(DEMO_REDIAL_MAX_ATTEMPTS)
            env["CMVOICE_RESULT_TASKS"] = ",".join([*settings.result_tasks, RECORD_OUTCOME_TASK])
        return env

    def plan(self) -> list[Child]:
        """The child processes, in the order they start."""
        options = self.options
        children = []
        if self.uses_simulator:
            scale = f"{options.time_scale:g}"
            simulator = ["simulator", "--host", HOST, "--port", str(options.simulator_port)]
            argv = _python_m("cmvoice", *simulator, "--time-scale", scale)
            children.append(Child("simulator", argv, "cyan"))
        receiver = ["receiver", "--host", HOST, "--port", str(options.receiver_port)]
        children.append(Child("receiver", _python_m("cmvoice", *receiver), "magenta"))
        queues = list(ALL_QUEUES)
        if self.settings.result_queue not in queues:
            queues.append(self.settings.result_queue)
        worker = ["worker", "--beat", "--concurrency", str(DEV_WORKER_CONCURRENCY)]
        worker += ["--queues", ",".join(queues), "--hostname", self.worker_name]
        # One worker: nobody to synchronise with at start-up, which saves seconds.
        worker += ["--without-mingle", "--without-gossip"]
        if options.demo:
            worker += ["--include", "cmvoice.demo"]
        children.append(Child("worker", _python_m("cmvoice", *worker), "green"))
        flower = ["-A", "cmvoice.worker", "flower", f"--port={options.flower_port}"]
        children.append(
            Child(
                "flower",
                _python_m("celery", *flower, f"--address={HOST}"),
                "yellow",
                # Through the environment, not --basic-auth: arguments are visible to `ps`.
                env={"FLOWER_BASIC_AUTH": f"{self.flower_user}:{self.flower_password}"},
                # After the worker: Flower asks the workers for their state when it starts.
                stage=1,
            )
        )
        return children

    def start_children(self, children: list[Child]) -> None:
        env = self.shared_env()
        for child in children:
            self.children.append(child)
            child.process = subprocess.Popen(
                child.argv,
                env={**env, **child.env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # A process group of its own: a Ctrl-C in the terminal reaches only us, so we
                # stop the parts in order; and killing the group takes the part's own children
                # (the worker's beat) with it.
                start_new_session=True,
            )
            assert child.process.stdout is not None
            child.reader = threading.Thread(
                target=self._stream,
                args=(child, child.process.stdout),
                name=f"log-{child.name}",
                daemon=True,
            )
            child.reader.start()

    def health_checks(self) -> dict[str, Callable[[], bool]]:
        checks: dict[str, Callable[[], bool]] = {
            "simulator": lambda: _http_ok(f"{self.simulator_url}/_sim/health"),
            "receiver": lambda: _http_ok(f"{self.receiver_url}/healthz"),
            "worker": self._worker_answers,
            "flower": self._flower_sees_worker,
        }
        return checks

    def _worker_answers(self) -> bool:
        replies = celery_app.control.ping(destination=[self.worker_name], timeout=0.5)
        return bool(replies)

    def _flower_sees_worker(self) -> bool:
        # Up is not enough: Flower must receive the worker's events (its heartbeats), or the
        # tasks sent before it subscribed would never show in its task list.
        try:
            answer = requests.get(
                f"{self.flower_url}/api/workers",
                params={"status": "true"},
                auth=(self.flower_user, self.flower_password),
                timeout=1.0,
            )
            return answer.status_code == 200 and answer.json().get(self.worker_name) is True
        except (requests.RequestException, ValueError):
            return False

    def wait_until_ready(self) -> None:
        checks = self.health_checks()
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
            self.pause(0.2)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.check_ports()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.start_redis()
        self.runtime = Runtime.from_settings(self.settings)
        plan = self.plan()
        for stage in sorted({child.stage for child in plan}):
            self.start_children([child for child in plan if child.stage == stage])
            self.wait_until_ready()

    def summary(self) -> list[tuple[str, str]]:
        """Where every part is, as (part, where) rows: printed once all of them answer."""
        broker = self.settings.effective_broker_url
        if self.redis is not None:
            rows = [("Redis", f"{broker}  (embedded, data in {self.redis.data_dir})")]
        else:
            rows = [("broker", redact_url(broker))]
        if self.uses_simulator:
            control = f"control API {self.simulator_url}/_sim/docs"
            scale = f"time scale {self.options.time_scale:g}"
            rows.append(("CM simulator", f"{self.api_url}  ({control}, {scale})"))
        else:
            rows.append(("CM", f"{self.api_url}  (real calls, with CMVOICE_PRODUCT_TOKEN)"))
        callbacks = f"{self.callback_base_url}/callbacks/cm/..."
        rows.append(("receiver", f"{self.receiver_url}  (CM posts to {callbacks})"))
        reconcile = f"reconciler every {self.settings.reconcile_interval:g} s"
        rows.append(("worker", f"{self.worker_name}  (all queues; {reconcile})"))
        if self.flower_password_generated:
            password = f"password {self.flower_password} (generated; set CMVOICE_FLOWER_PASSWORD)"
        else:
            password = "password from CMVOICE_FLOWER_PASSWORD"  # noqa: S105 - a sentence
        rows.append(("Flower", f"{self.flower_url}  (user {self.flower_user}, {password})"))
        metrics = f"{self.flower_url}/metrics, {self.receiver_url}/metrics"
        rows.append(("health", f"{self.receiver_url}/healthz; Prometheus: {metrics}"))
        return rows

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
            assert child.process is not None
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
            if child.process is not None:
                while _group_alive(child) and time.monotonic() < deadline:
                    time.sleep(_TICK_S)
                _signal_group(child, signal.SIGKILL)
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=2)
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
                with self._print_lock:
                    for part, where in self.summary():
                        line = Text.assemble((f"{part:>12}  ", "bold"), where)
                        self.console.print(line, soft_wrap=True, highlight=False)
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

    def demo(self) -> DemoReport:
        """Send the demo calls and wait for their outcomes (the body of ``--demo``)."""
        assert self.runtime is not None
        self.say("demo: sending a notification, an OTP, a DTMF and an unanswered call")
        return run_demo(
            self.runtime,
            self.simulator_url,
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


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1.0).status_code == 200
    except requests.RequestException:
        return False


def _signal_group(child: Child, signum: int) -> None:
    if child.process is None:
        return
    # The child leads its own group (start_new_session): its pid is the group's id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.process.pid, signum)


def _group_alive(child: Child) -> bool:
    assert child.process is not None
    try:
        os.killpg(child.process.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
