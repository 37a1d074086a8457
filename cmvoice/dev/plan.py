"""What ``cmvoice dev`` runs: its options, where each part listens, each child's argv and env."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from cmvoice.config import DEFAULT_RECEIVER_PORT, Settings
from cmvoice.crypto import kept_key
from cmvoice.messages import ALL_QUEUES
from cmvoice.simulator.config import DEFAULT_PORT as DEFAULT_SIMULATOR_PORT
from cmvoice.simulator.config import DEFAULT_PREFIX as SIMULATOR_API_PREFIX

#: Where Flower listens unless ``--flower-port`` moves it (Flower's own default as well).
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
#: Columns of Flower's Tasks page (its ``tasks_columns`` option), in this order. Flower's
#: default hides result, exception and args; ours say what a dispatch did ("placed call ...",
#: "waiting: ..."; a failed one's reason is its exception, since a FAILURE has no result) and
#: which call it was (the instruction id), never personal data. What happened comes right after
#: the state, so that it shows without scrolling.
FLOWER_TASK_COLUMNS = "name,uuid,state,result,exception,args,received,started,runtime,worker"


@dataclass(frozen=True)
class DevOptions:
    """The options of ``cmvoice dev``."""

    #: Data of the embedded Redis and of beat (the CLI passes CMVOICE_DATA_DIR by default).
    data_dir: Path
    receiver_port: int = DEFAULT_RECEIVER_PORT
    simulator_port: int = DEFAULT_SIMULATOR_PORT
    flower_port: int = DEFAULT_FLOWER_PORT
    time_scale: float = 1.0
    demo: bool = False
    demo_timeout_s: float = DEFAULT_DEMO_TIMEOUT_S
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S
    stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S
    #: Modules the worker imports (``--include``): an application's result tasks.
    includes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChildSpec:
    """One part to run as a child process: ``python -m module args...``."""

    name: str
    module: str
    args: list[str]
    #: Colour of the part's name in front of its log lines.
    style: str
    #: Variables for this child only, on top of the shared environment.
    env: dict[str, str] = field(default_factory=dict)
    #: Children start stage by stage; a stage starts once the ones before it are ready.
    stage: int = 0


#: File in dev's data directory keeping the key that encrypts codes, numbers and prompts at rest.
ENCRYPTION_KEY_FILE = "encryption.key"


class DevPlan:
    """Which parts run, where they listen, and how they find each other."""

    def __init__(self, settings: Settings, options: DevOptions) -> None:
        self.options = options
        self.data_dir = options.data_dir.resolve()
        #: Where dev keeps the key it encrypts with, when none is configured (else None).
        self.encryption_key_file: Path | None = None
        if settings.encryption_key is None:
            # Codes, numbers and prompts are encrypted in dev's Redis too, with a key dev keeps
            # beside its data, so a restart still reads it (production sets the variable).
            self.encryption_key_file = self.data_dir / ENCRYPTION_KEY_FILE
            key = SecretStr(kept_key(self.encryption_key_file))
            settings = settings.model_copy(update={"encryption_key": key})
        self.settings = settings
        self.uses_simulator = settings.product_token is None
        self.worker_name = f"cmvoice-dev-{os.getpid()}@{socket.gethostname()}"
        self.flower_user = settings.flower_user
        password = settings.flower_password
        self.flower_password_generated = password is None
        self.flower_password = (
            secrets.token_urlsafe(12) if password is None else password.get_secret_value()
        )

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
        if self.uses_simulator:
            return f"{self.simulator_url}{SIMULATOR_API_PREFIX}"
        return self.settings.api_url

    @property
    def callback_base_url(self) -> str:
        # With real CM, a callback URL the user set (a public tunnel) is kept; CM cannot reach
        # 127.0.0.1. The simulator runs here, so it always posts to the local receiver.
        user_set = "callback_base_url" in self.settings.model_fields_set
        if not self.uses_simulator and user_set:
            return self.settings.callback_base_url
        return self.receiver_url

    def ports(self) -> list[tuple[int, str, str]]:
        """The ports dev's parts listen on, as (port, option that moves it, part)."""
        wanted = [(self.options.receiver_port, "--receiver-port", "the receiver")]
        if self.uses_simulator:
            wanted.append((self.options.simulator_port, "--simulator-port", "the simulator"))
        wanted.append((self.options.flower_port, "--flower-port", "Flower"))
        return wanted

    # -- what the worker runs

    @property
    def worker_includes(self) -> list[str]:
        """Modules the worker imports: the user's (``--include``), and the demo's result task."""
        includes = list(self.options.includes)
        if self.options.demo:
            includes.append(_demo_module())
        return includes

    @property
    def worker_queues(self) -> list[str]:
        """cmvoice's queues; the result queue only when the worker can run the result tasks.

        The result tasks are the application's: without its module (``--include``), this worker
        would take their messages and drop them as "unregistered task". Left in their queue,
        they wait for a worker that has the module.
        """
        queues = list(ALL_QUEUES)
        result_queue = self.settings.result_queue
        if self.worker_includes and result_queue not in queues:
            queues.append(result_queue)
        return queues

    @property
    def stranded_result_tasks(self) -> list[str]:
        """Result tasks whose messages no worker of dev consumes (none when all of them run)."""
        if self.settings.result_queue in self.worker_queues:
            return []
        return list(self.settings.result_tasks)

    # -- the children

    def shared_env(self, callback_secret: str) -> dict[str, str]:
        """The environment of every child: ours, plus what makes the parts find each other.

        ``callback_secret``: the configured secret, or the one generated and kept in Redis;
        the worker signs with it and the receiver checks with it, so they must agree.
        """
        settings = self.settings
        env = dict(os.environ)
        env.update(
            {
                "CMVOICE_BROKER_URL": settings.effective_broker_url,
                "CMVOICE_DATA_DIR": str(self.data_dir),
                "CMVOICE_API_URL": self.api_url,
                "CMVOICE_CALLBACK_BASE_URL": self.callback_base_url,
                "CMVOICE_CALLBACK_SECRET": callback_secret,
                # Logs must reach us line by line, not in 8 KiB blocks.
                "PYTHONUNBUFFERED": "1",
            }
        )
        if settings.encryption_key is not None:
            # Every part reads and writes the same encrypted ledger.
            env["CMVOICE_ENCRYPTION_KEY"] = settings.encryption_key.get_secret_value()
        if self.options.demo:
            # The demo's unanswered call is redialed quickly, unless the user chose a policy.
            if "redial_delay" not in settings.model_fields_set:
                env["CMVOICE_REDIAL_DELAY"] = DEMO_REDIAL_DELAY
            if "redial_max_attempts" not in settings.model_fields_set:
                env["CMVOICE_REDIAL_MAX_ATTEMPTS"] = str(DEMO_REDIAL_MAX_ATTEMPTS)
            demo_task = _demo_result_task()
            env["CMVOICE_RESULT_TASKS"] = ",".join([*settings.result_tasks, demo_task])
        return env

    def children(self) -> list[ChildSpec]:
        """The child processes, in the order they start."""
        options = self.options
        children = []
        if self.uses_simulator:
            scale = f"{options.time_scale:g}"
            simulator = ["simulator", "--host", HOST, "--port", str(options.simulator_port)]
            simulator += ["--time-scale", scale]
            children.append(ChildSpec("simulator", "cmvoice", simulator, "cyan"))
        receiver = ["receiver", "--host", HOST, "--port", str(options.receiver_port)]
        children.append(ChildSpec("receiver", "cmvoice", receiver, "magenta"))
        worker = ["worker", "--beat", "--concurrency", str(DEV_WORKER_CONCURRENCY)]
        worker += ["--queues", ",".join(self.worker_queues), "--hostname", self.worker_name]
        # One worker: nobody to synchronise with at start-up, which saves seconds.
        worker += ["--without-mingle", "--without-gossip"]
        for module in self.worker_includes:
            worker += ["--include", module]
        children.append(ChildSpec("worker", "cmvoice", worker, "green"))
        flower = ["-A", "cmvoice.worker", "flower", f"--port={options.flower_port}"]
        flower += [f"--address={HOST}", f"--tasks_columns={FLOWER_TASK_COLUMNS}"]
        children.append(
            ChildSpec(
                "flower",
                "celery",
                flower,
                "yellow",
                # Through the environment, not --basic-auth: arguments are visible to `ps`.
                env={"FLOWER_BASIC_AUTH": f"{self.flower_user}:{self.flower_password}"},
                # After the worker: Flower asks the workers for their state when it starts.
                stage=1,
            )
        )
        return children


# Imported on demand: importing cmvoice.dev.demo registers its task on the Celery app, which
# only a demo wants (the `cmvoice` command imports this package for its option defaults).


def _demo_module() -> str:
    from cmvoice.dev import demo

    return demo.__name__


def _demo_result_task() -> str:
    from cmvoice.dev.demo import RECORD_OUTCOME_TASK

    return RECORD_OUTCOME_TASK
