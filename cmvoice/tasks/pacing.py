"""The pacer's thread in a worker: a consumer bootstep, so every ``cmvoice worker`` (and a test
worker) runs one, and the lease in Redis lets one of them release at a time."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps

from cmvoice.campaigns.pacer import Pacer
from cmvoice.runtime import get_runtime

logger = logging.getLogger(__name__)

#: Seconds the step waits for the pacer thread to finish its step when the worker stops.
STOP_TIMEOUT_S = 5.0


class PacerStep(bootsteps.StartStopStep):
    """Starts the pacer loop with the consumer, stops it with the consumer."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pacer: Pacer | None = None

    def start(self, parent: Any) -> None:
        runtime = get_runtime()
        if not runtime.settings.pacer:
            logger.info("pacer: off in this worker (CMVOICE_PACER=false)")
            return
        self._stop.clear()
        pacer = self._pacer = Pacer(runtime)
        self._thread = threading.Thread(
            target=pacer.run, args=(self._stop, get_runtime), name="cmvoice-pacer", daemon=True
        )
        self._thread.start()

    def stop(self, parent: Any) -> None:
        self._stop.set()
        if self._pacer is not None:
            self._pacer.wake()  # it may be waiting on the wake-up list for a second
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            self._thread = None

    shutdown = stop
