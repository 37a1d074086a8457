"""What ``cmvoice dev`` prints: every part's log prefixed by its name, and where each part is."""

from __future__ import annotations

import threading
from typing import IO

from rich.console import Console
from rich.text import Text

from cmvoice.dev.plan import DevPlan
from cmvoice.privacy import redact_url

#: Width of the part's name in front of each log line.
NAME_WIDTH = 9
#: Width of the part's name in the summary.
SUMMARY_NAME_WIDTH = 12


class DevConsole:
    """Prints whole lines from several threads (one per child) without mixing them up."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()

    def say(self, message: str, style: str = "bold") -> None:
        """A line of ``cmvoice dev`` itself."""
        self.line("dev", "bold", Text(message, style=style))

    def line(self, name: str, style: str, text: Text) -> None:
        line = Text.assemble((f"{name:>{NAME_WIDTH}} | ", style), text)
        with self._lock:
            # soft_wrap: long log lines are not cut at 80 columns when the output is a pipe.
            self.console.print(line, soft_wrap=True, highlight=False)

    def stream(self, name: str, style: str, stream: IO[bytes]) -> None:
        """Print a child's output line by line, prefixed by its name (one thread per child)."""
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", errors="replace").rstrip()
            if text:
                self.line(name, style, Text(text))
        stream.close()

    def table(self, rows: list[tuple[str, str]]) -> None:
        """(part, where) rows, as one block no log line can cut in two."""
        with self._lock:
            for part, where in rows:
                line = Text.assemble((f"{part:>{SUMMARY_NAME_WIDTH}}  ", "bold"), where)
                self.console.print(line, soft_wrap=True, highlight=False)


def summary_rows(plan: DevPlan, redis_data_dir: str | None) -> list[tuple[str, str]]:
    """Where every part is, as (part, where) rows: printed once all of them answer.

    ``redis_data_dir``: where the embedded Redis keeps its data; None when dev uses a Redis
    (or another broker) it did not start.
    """
    settings = plan.settings
    broker = settings.effective_broker_url
    if redis_data_dir is not None:
        rows = [("Redis", f"{broker}  (embedded, data in {redis_data_dir})")]
    else:
        rows = [("broker", redact_url(broker))]
    if plan.uses_simulator:
        control = f"control API {plan.simulator_url}/_sim/docs"
        scale = f"time scale {plan.options.time_scale:g}"
        rows.append(("CM simulator", f"{plan.api_url}  ({control}, {scale})"))
    else:
        rows.append(("CM", f"{plan.api_url}  (real calls, with CMVOICE_PRODUCT_TOKEN)"))
    callbacks = f"{plan.callback_base_url}/callbacks/cm/..."
    rows.append(("receiver", f"{plan.receiver_url}  (CM posts to {callbacks})"))
    reconcile = f"reconciler every {settings.reconcile_interval:g} s"
    work = f"queues {', '.join(plan.worker_queues)}; {reconcile}"
    if plan.worker_includes:
        work += f"; imports {', '.join(plan.worker_includes)}"
    rows.append(("worker", f"{plan.worker_name}  ({work})"))
    if plan.flower_password_generated:
        password = f"password {plan.flower_password} (generated; set CMVOICE_FLOWER_PASSWORD)"
    else:
        password = "password from CMVOICE_FLOWER_PASSWORD"  # noqa: S105 - a sentence
    rows.append(("Flower", f"{plan.flower_url}  (user {plan.flower_user}, {password})"))
    key = plan.encryption_key_file or "CMVOICE_ENCRYPTION_KEY"
    at_rest = f"OTP codes, numbers and prompts encrypted in Redis (key: {key})"
    rows.append(("at rest", at_rest))
    metrics = f"{plan.flower_url}/metrics, {plan.receiver_url}/metrics"
    rows.append(("health", f"{plan.receiver_url}/healthz; Prometheus: {metrics}"))
    return rows
