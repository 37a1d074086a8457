"""ServerThread: any ASGI app served by uvicorn in a background thread, for tests and dev tools."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn

#: How long ``start()`` waits for the server to accept connections.
DEFAULT_STARTUP_TIMEOUT_S = 10.0
#: How long ``stop()`` lets requests in flight finish before uvicorn cancels them.
DEFAULT_GRACEFUL_TIMEOUT_S = 5
#: Seconds between two looks at whether the server has started.
_POLL_INTERVAL_S = 0.005


class ServerThread:
    """Runs an ASGI app with uvicorn on ``host:port`` in a daemon thread.

    ``port=0`` picks a free port; ``port`` and ``url`` give the real one once bound. The socket
    is bound by ``start()`` itself, so the port is known (and ours) before uvicorn runs.

    Usage::

        with ServerThread(create_app()) as server:
            requests.get(f"{server.url}/healthz")
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
        access_log: bool = False,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        graceful_timeout_s: int = DEFAULT_GRACEFUL_TIMEOUT_S,
        name: str = "uvicorn",
    ) -> None:
        self.host = host
        self._requested_port = port
        self._startup_timeout_s = startup_timeout_s
        self._name = name
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            # None: do not let every test server reconfigure the process's logging.
            log_config=None,
            log_level=log_level,
            access_log=access_log,
            lifespan="on",
            # No websockets here; not importing them keeps their deprecation warnings away.
            ws="none",
            timeout_graceful_shutdown=graceful_timeout_s,
        )
        self._server = uvicorn.Server(self._config)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port once started; the requested one before."""
        return self._port if self._port is not None else self._requested_port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:54321``: the base URL clients use."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._server.started

    def start(self) -> Self:
        """Bind, start serving, and return once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("ServerThread.start(): already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP;
        # without it every keep-alive request waits ~40 ms for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._run, name=f"{self._name}:{self._port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                self._close_socket()
                raise RuntimeError(
                    f"server on {self.url} failed to start: {self._error!r}"
                ) from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"server on {self.url} did not start within {self._startup_timeout_s} s"
                )
            time.sleep(_POLL_INTERVAL_S)
        return self

    def _run(self) -> None:
        assert self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # SystemExit too: uvicorn exits on a failed startup
            self._error = exc

    def stop(self) -> None:
        """Ask the server to finish (requests in flight get the graceful timeout) and wait."""
        thread = self._thread
        if thread is None:
            return
        self._server.should_exit = True
        thread.join()
        self._close_socket()

    def _close_socket(self) -> None:
        # uvicorn closes the listening socket on shutdown; closing twice is harmless, and
        # needed when startup failed before uvicorn took it over.
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"ServerThread(url={self.url!r}, {state})"
