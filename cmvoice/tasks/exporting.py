"""The worker's metrics endpoint: a worker bootstep that serves ``cmvoice.metrics`` over HTTP
while the worker runs, on ``--metrics-port`` or ``CMVOICE_WORKER_METRICS_PORT`` (off without)."""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from cmvoice import metrics
from cmvoice.runtime import get_runtime

logger = logging.getLogger(__name__)


class MetricsStep(bootsteps.StartStopStep):
    """Starts the metrics server with the worker (not its consumer: a reconnect to the broker
    restarts the consumer, and the counters must not miss a scrape), stops it with the worker.

    ``metrics_port`` and ``metrics_host`` are the worker's command-line options (cmvoice.worker
    adds them to Celery's ``worker`` command).
    """

    def __init__(
        self,
        parent: Any,
        metrics_port: int | None = None,
        metrics_host: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(parent, **kwargs)
        self.port = metrics_port
        self.host = metrics_host or metrics.DEFAULT_METRICS_HOST
        self._server: metrics.MetricsServer | None = None

    def start(self, parent: Any) -> None:
        port = self.port or get_runtime().settings.worker_metrics_port
        if port is None:
            return
        try:
            self._server = metrics.serve(self.host, port)
        except OSError as exc:
            # Calls matter more than their metrics: the worker goes on, and Prometheus sees
            # this target down.
            logger.error(
                "metrics: cannot serve on %s:%s (%s); this worker exposes no metrics",
                self.host,
                port,
                exc,
            )
            return
        logger.info("metrics: Prometheus text on %s", self._server.url)

    def stop(self, parent: Any) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    terminate = stop
