"""CallbackSink: a tiny real HTTP server recording POSTed JSON bodies; wait_until for polling."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True)
class Received:
    """One POST as the sink saw it, and the status it answered."""

    path: str
    body: Any
    status: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connections under a burst of callbacks, and the
    # sender's TCP then waits a whole second before trying again.
    request_queue_size = 256


class CallbackSink:
    """Records every POST; answers the planned statuses first (``fail_with``), then 204.

    Usage::

        with CallbackSink() as sink:
            ...  # send instructions with callback-url=sink.url
            bodies = sink.wait_for(1)
    """

    def __init__(self, statuses: Iterable[int] = ()) -> None:
        self._planned: deque[int] = deque(statuses)
        self._received: list[Received] = []
        self._changed = threading.Condition()
        # Set: answer at once. Cleared by hold(): requests wait until release().
        self._open = threading.Event()
        self._open.set()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw
                sink._open.wait(timeout=30)
                status = sink._record(self.path, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            # A short poll interval: shutdown() waits up to one interval.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="callback-sink",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """A callback URL on the sink (any path is accepted)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/callbacks"

    def fail_with(self, *statuses: int) -> None:
        """Answer the next POSTs with these statuses, in order, before going back to 204."""
        with self._changed:
            self._planned.extend(statuses)

    def hold(self) -> None:
        """Keep every callback waiting (unanswered) until ``release()``: a stuck receiver."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def _record(self, path: str, body: Any) -> int:
        with self._changed:
            status = self._planned.popleft() if self._planned else 204
            self._received.append(Received(path, body, status))
            self._changed.notify_all()
            return status

    @property
    def received(self) -> list[Received]:
        with self._changed:
            return list(self._received)

    def accepted_bodies(self) -> list[Any]:
        """Bodies of the POSTs answered 2xx (the callbacks that count as delivered)."""
        return [item.body for item in self.received if 200 <= item.status < 300]

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[Any]:
        """Wait until ``count`` POSTs were answered 2xx; return their bodies."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                accepted = [r.body for r in self._received if 200 <= r.status < 300]
                if len(accepted) >= count:
                    return accepted
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    raise AssertionError(
                        f"expected {count} callback(s) within {timeout_s} s, got {len(accepted)}"
                    )
                self._changed.wait(remaining_s)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "") -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        time.sleep(0.01)
