"""Worker metrics for Prometheus: counters bumped where calls go, gauges read from Redis."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from cmvoice.errors import (
    AuthenticationFailed,
    CmThrottled,
    CmUnavailable,
    CmUnreachable,
    RequestRefused,
    VoiceApiError,
)

if TYPE_CHECKING:
    # Imported when first needed, not with this module: the dispatch path, the receiver and
    # the calling rules import it, and a web app that enqueues must not pay for Prometheus.
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    from cmvoice.runtime import Runtime

logger = logging.getLogger(__name__)

#: Interface a worker serves its metrics on unless ``--metrics-host`` says otherwise.
DEFAULT_METRICS_HOST = "127.0.0.1"
#: The value of a label whose input is none of its known values: labels stay bounded.
OTHER = "other"
#: Instruction kinds counted by name.
KINDS = ("notification", "otp", "dtmf")
#: Why a POST to CM placed no call: one value per branch of the RetryPolicy, never CM's text.
FAILURE_REASONS = (
    "refused",  # 400, 404, 422...: CM refused the request as wrong (FAILED)
    "bad_token",  # 401, 403: CM refused the product token (FAILED; the breaker opens)
    "retries_exhausted",  # unreachable or unavailable once too often (FAILED)
    "unknown",  # read timeout, 500: the call may have been placed (UNKNOWN)
    "throttled",  # 429 (retried after Retry-After)
    "unavailable",  # 502, 503, 504 (retried with backoff)
    "unreachable",  # connect or DNS error (retried with backoff)
)
#: The calling rules that may refuse a call.
REFUSAL_RULES = ("suppressed", "country", "per_number_limit", "cooldown", "window", "deadline")
#: CM result codes counted by value (9 not answered, 10 finished, 11 failed, 12 rejected).
RESULT_CODES = (9, 10, 11, 12)
#: Upper bounds of the rate-wait buckets, seconds: 0 counts the dispatches that did not wait;
#: an interactive wait is at most CMVOICE_MAX_RATE_WAIT (5 s by default).
RATE_WAIT_BUCKETS = (0.0, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Ledger states of calls in flight: claimed, placed and waiting for the callback, or unknown.
IN_FLIGHT_STATES = ("DISPATCHING", "PLACED", "UNKNOWN")
#: What a backlogged call waits for: ``ready`` nothing but the pacer (due now, its campaign
#: running), ``scheduled`` its due time (a retry, a redial), ``window`` its calling window to
#: open, ``paused`` its campaign.
BACKLOG_STATUSES = ("ready", "scheduled", "window", "paused")
#: The refusals by rule, counted in Redis by every process that refuses (producers, campaign
#: starts, workers), exposed by every worker: aggregate them with max, not sum.
REFUSALS = (
    "cmvoice_calls_refused",
    "Calls a calling rule refused or ended, by rule (all processes)",
)

#: The gauges read from Redis at scrape time: name, help, labels.
LEDGER_GAUGES = (
    ("cmvoice_concurrency_slots_in_use", "Concurrency slots held by calls in progress", ()),
    ("cmvoice_concurrency_slots_limit", "Concurrency slots of the account", ()),
    (
        "cmvoice_backlog_calls",
        "Calls waiting in Redis (campaign backlogs, interactive waiting room)",
        ("lane", "status"),
    ),
    ("cmvoice_calls_in_flight", "Calls dispatching, placed or unknown, by state", ("state",)),
    ("cmvoice_token_refused", "1 while CM's refusal of the product token holds every call", ()),
    ("cmvoice_redis_up", "1 when this scrape could read the ledger's Redis", ()),
)


def failure_reason(exc: VoiceApiError, action: str) -> str:
    """The bounded label of a failed POST, from its error and the RetryPolicy's ``action``."""
    if isinstance(exc, AuthenticationFailed):
        return "bad_token"
    if isinstance(exc, RequestRefused):
        return "refused"
    if action == "unknown":
        return "unknown"
    if action == "fail":
        return "retries_exhausted"
    if isinstance(exc, CmThrottled):
        return "throttled"
    if isinstance(exc, CmUnavailable):
        return "unavailable"
    if isinstance(exc, CmUnreachable):
        return "unreachable"
    return OTHER


def _bounded(value: str, known: Iterable[str]) -> str:
    return value if value in known else OTHER


def _process_runtime() -> Runtime:
    from cmvoice.runtime import get_runtime

    return get_runtime()


class WorkerMetrics:
    """The Prometheus metrics of one worker process (its own registry, so tests can make many).

    Args:
        runtime_factory: gives the Redis, keys and settings the gauges read at scrape time.
    """

    def __init__(self, runtime_factory: Callable[[], Runtime] = _process_runtime) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry: CollectorRegistry = CollectorRegistry()
        self.calls_placed: Counter = Counter(
            "cmvoice_calls_placed_total",
            "Calls CM accepted (call-queued), by instruction kind",
            ["kind"],
            registry=self.registry,
        )
        self.dispatch_failures: Counter = Counter(
            "cmvoice_dispatch_failures_total",
            "POSTs to CM that placed no call, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.rate_wait: Histogram = Histogram(
            "cmvoice_rate_wait_seconds",
            "Seconds a dispatch slept for its rate turn and at the send gate",
            registry=self.registry,
            buckets=RATE_WAIT_BUCKETS,
        )
        self.outcomes: Counter = Counter(
            "cmvoice_outcomes_total",
            "Call outcomes recorded from CM's callbacks, by result code",
            ["code"],
            registry=self.registry,
        )
        # Every known label value from the start: a series that appears only with its first
        # event breaks rate() and the alerts that compare with zero.
        for kind in KINDS:
            self.calls_placed.labels(kind=kind)
        for reason in FAILURE_REASONS:
            self.dispatch_failures.labels(reason=reason)
        for code in (*RESULT_CODES, OTHER):
            self.outcomes.labels(code=str(code))
        self.ledger_gauges = LedgerGauges(runtime_factory)
        self.registry.register(cast("Collector", self.ledger_gauges))

    def count_placed(self, kind: str) -> None:
        self.calls_placed.labels(kind=_bounded(kind, KINDS)).inc()

    def count_failure(self, exc: VoiceApiError, action: str) -> None:
        self.dispatch_failures.labels(reason=failure_reason(exc, action)).inc()

    def observe_rate_wait(self, seconds: float) -> None:
        self.rate_wait.observe(seconds)

    def count_outcome(self, code: int) -> None:
        self.outcomes.labels(code=str(code) if code in RESULT_CODES else OTHER).inc()

    def names(self) -> set[str]:
        """Every metric family this registry exposes (``cmvoice_calls_placed``, no ``_total``)."""
        families = [
            *self.calls_placed.describe(),
            *self.dispatch_failures.describe(),
            *self.rate_wait.describe(),
            *self.outcomes.describe(),
            *self.ledger_gauges.describe(),
        ]
        return {family.name for family in families}


@dataclass
class LedgerState:
    """What the gauges show: a few counts read from Redis in one scrape."""

    slots_in_use: int = 0
    backlog: dict[tuple[str, str], int] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    token_refused: bool = False
    refusals: dict[str, int] = field(default_factory=dict)


class LedgerGauges:
    """A Prometheus collector of gauges read from Redis when scraped: a few pipelined counts
    (ZCARD, ZCOUNT, LLEN, SMEMBERS of the active campaigns), never a scan of the keyspace.
    Every worker shows the same values (they share the Redis): aggregate them with max."""

    def __init__(self, runtime_factory: Callable[[], Runtime]) -> None:
        self.runtime_factory = runtime_factory

    def describe(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        families: list[GaugeMetricFamily | CounterMetricFamily] = [
            GaugeMetricFamily(name, doc, labels=list(labels)) for name, doc, labels in LEDGER_GAUGES
        ]
        families.append(CounterMetricFamily(*REFUSALS, labels=["rule"]))
        return families

    def collect(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        import redis

        runtime = self.runtime_factory()
        families = {family.name: family for family in self.describe()}
        families["cmvoice_concurrency_slots_limit"].add_metric(
            [], runtime.settings.max_concurrent_calls
        )
        try:
            state = read_ledger_state(runtime)
        except (redis.RedisError, OSError) as exc:
            # The counters are still worth a scrape; the gauges are absent, not zero.
            logger.warning("metrics: cannot read Redis for the gauges: %s", exc)
            families["cmvoice_redis_up"].add_metric([], 0)
            return [family for family in families.values() if family.samples]
        families["cmvoice_redis_up"].add_metric([], 1)
        families["cmvoice_concurrency_slots_in_use"].add_metric([], state.slots_in_use)
        for (lane, status), calls in sorted(state.backlog.items()):
            families["cmvoice_backlog_calls"].add_metric([lane, status], calls)
        for name, calls in state.in_flight.items():
            families["cmvoice_calls_in_flight"].add_metric([name], calls)
        families["cmvoice_token_refused"].add_metric([], 1 if state.token_refused else 0)
        for rule in REFUSAL_RULES:
            families[REFUSALS[0]].add_metric([rule], state.refusals.get(rule, 0))
        return list(families.values())


def read_ledger_state(runtime: Runtime) -> LedgerState:
    """The counts behind the gauges: one pipeline, plus two when campaigns are active."""
    from cmvoice.campaigns.plan import open_groups
    from cmvoice.replies import as_int, as_text
    from cmvoice.rules.windows import CallingPolicy

    keys = runtime.keys
    pipe = runtime.redis.pipeline(transaction=False)
    pipe.time()
    pipe.hget(keys.account(runtime.account), "refused_until")
    pipe.zcard(keys.slots(runtime.account))
    pipe.llen(keys.interactive_waiting())
    for name in IN_FLIGHT_STATES:
        pipe.zcard(keys.state_index(name))
    pipe.hgetall(keys.refusals())
    pipe.smembers(keys.active_campaigns())
    (seconds, micros), refused_until, slots, waiting, *in_flight, refusals, active = pipe.execute()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    state = LedgerState(
        slots_in_use=int(slots),
        in_flight=dict(zip(IN_FLIGHT_STATES, map(int, in_flight), strict=True)),
        token_refused=as_int(refused_until) > now_ms,
        refusals={_bounded(as_text(rule), REFUSAL_RULES): int(n) for rule, n in refusals.items()},
    )
    # The waiting room holds only calls that may go now; a campaign's may wait for more.
    state.backlog = {("interactive", "ready"): int(waiting)}
    state.backlog.update({("campaign", status): 0 for status in BACKLOG_STATUSES})
    campaign_ids = sorted(as_text(campaign_id) for campaign_id in active)
    if not campaign_ids:
        return state
    pipe = runtime.redis.pipeline(transaction=False)
    for campaign_id in campaign_ids:
        pipe.hmget(keys.campaign(campaign_id), "status", "window", "days")
        pipe.smembers(keys.campaign(campaign_id, "groups"))
    replies = pipe.execute()
    backlogs: list[tuple[str, bool]] = []
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    settings = runtime.settings
    pipe = runtime.redis.pipeline(transaction=False)
    for index, campaign_id in enumerate(campaign_ids):
        status, window, days = (as_text(value or b"") for value in replies[2 * index])
        groups = sorted(as_text(group) for group in replies[2 * index + 1])
        policy = CallingPolicy.parse(
            window or settings.calling_window, days or settings.calling_days
        )
        opened = set(open_groups(policy, groups, now)[0])
        for group in groups:
            backlogs.append((status, group in opened))
            key = keys.backlog(campaign_id, group)
            pipe.zcount(key, "-inf", now_ms)
            pipe.zcard(key)
    counts = iter(pipe.execute())
    for status, window_open in backlogs:
        due_now, total = int(next(counts)), int(next(counts))
        if status == "paused":
            state.backlog[("campaign", "paused")] += total
        elif status == "running":
            state.backlog[("campaign", "ready" if window_open else "window")] += due_now
            state.backlog[("campaign", "scheduled")] += total - due_now
    return state


class MetricsServer:
    """Prometheus's text format over HTTP (any path), served by a thread of this process."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        from prometheus_client import start_http_server

        self._server: WSGIServer
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.host = host
        self.port = int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve(host: str, port: int, metrics: WorkerMetrics | None = None) -> MetricsServer:
    """Serve ``metrics`` (this process's by default) on ``host:port``.

    Raises:
        OSError: the port cannot be bound (in use, or a privileged port).
    """
    return MetricsServer((metrics or worker_metrics()).registry, host, port)


_metrics: WorkerMetrics | None = None
_metrics_lock = threading.Lock()


def worker_metrics() -> WorkerMetrics:
    """This process's metrics, made on first use."""
    global _metrics
    if _metrics is None:
        with _metrics_lock:
            if _metrics is None:
                _metrics = WorkerMetrics()
    return _metrics


# One-line calls for the code paths that count (dispatch, results, pacer, calling rules).
def count_placed(kind: str) -> None:
    """CM accepted a call of ``kind`` (``notification``, ``otp``, ``dtmf``)."""
    worker_metrics().count_placed(kind)


def count_failure(exc: VoiceApiError, action: str) -> None:
    """A POST to CM failed with ``exc``; ``action`` is the RetryPolicy's decision."""
    worker_metrics().count_failure(exc, action)


def observe_rate_wait(seconds: float) -> None:
    """A dispatch slept ``seconds`` for its rate turn (0 when it went at once)."""
    worker_metrics().observe_rate_wait(seconds)


def count_outcome(code: int) -> None:
    """A callback with CM result ``code`` was recorded."""
    worker_metrics().count_outcome(code)
