"""A worker's Prometheus metrics, scraped over HTTP as Prometheus would.

``cmvoice worker --metrics-port`` in a process of its own (fresh counters), the simulator and
the receiver, a real Redis; and the Redis gauges served from this process while no worker runs,
so a backlog stays where it is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cmvoice import metrics
from cmvoice.calls import CallState
from cmvoice.campaigns import control
from cmvoice.campaigns.enqueue import start_campaign
from cmvoice.campaigns.store import CampaignStore
from cmvoice.config import Settings
from cmvoice.embedded_redis import free_port
from cmvoice.errors import CallNotAllowed
from cmvoice.producer import enqueue
from cmvoice.publishing import publish_dispatch
from cmvoice.rules.suppression import SuppressionList
from cmvoice.runtime import Runtime, get_runtime
from cmvoice.worker import app
from tests.support.stack import CALLEE, CALLER, Stack, wait_for
from tests.support.workers import WorkerProcess

#: The simulator ends a call to a number ending in 11 with result code 11 (failed).
FAILING_CALLEE = "+31612345611"
#: A Belgian mobile number: refused where only Dutch numbers are allowed.
BELGIAN = "+32470123456"
#: An API URL other than CM's: the runtime then needs no product token.
SIMULATOR_API_URL = "http://127.0.0.1:9/voiceapi/v2"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of a Prometheus text page, by name and labels."""
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} is not exposed"
    return samples[key]


def total(samples: Samples, name: str) -> float:
    return sum(sample for (sample_name, _), sample in samples.items() if sample_name == name)


def notification(callee: str = CALLEE, **extra: Any) -> dict[str, Any]:
    return {"callee": callee, "caller": CALLER, "prompt": "Your parcel arrives today.", **extra}


def state_of(runtime: Runtime, instruction_id: str) -> CallState | None:
    record = runtime.ledger.get(instruction_id)
    return record.state if record else None


@pytest.fixture
def metrics_worker(stack: Stack, tmp_path: Path) -> Iterator[tuple[WorkerProcess, str]]:
    """Settings for ``cmvoice worker --metrics-port <free port>``; the test starts it."""
    port = free_port()
    settings = {
        "broker_url": stack.redis_url,
        "api_url": stack.simulator_url + "/voiceapi/v2",
        "callback_base_url": stack.receiver_url,
        "rate_limit": "1000/s",
        "http_timeout": 2.0,
    }
    stack.make_runtime(**settings)
    process = WorkerProcess(
        settings, tmp_path / "worker.log", name="metrics", extra_args=["--metrics-port", str(port)]
    )
    try:
        yield process, f"http://127.0.0.1:{port}/metrics"
    finally:
        process.stop()


@pytest.mark.slow
def test_a_worker_serves_what_it_placed_refused_and_recorded_and_the_ledger_gauges(
    stack: Stack, metrics_worker: tuple[WorkerProcess, str]
) -> None:
    # Given calls waiting in the broker before the worker starts: two notifications (one
    # the callee's network fails, code 11), an OTP, one CM refuses (a prompt over 800
    # characters, written around enqueue's checks) and one whose deadline passes meanwhile
    process, url = metrics_worker
    runtime = get_runtime()
    finished = enqueue(notification())
    failing = enqueue(notification(FAILING_CALLEE))
    otp = enqueue({"callee": CALLEE, "caller": CALLER, "code": "4821"}, kind="otp")
    runtime.ledger.create("refused-by-cm", "notification", notification(prompt="x" * 800))
    publish_dispatch(["refused-by-cm"])
    late = enqueue(notification(), expires_in=0.05)

    # When the worker runs them all, and its metrics page is scraped
    process.wait_ready(app)
    ended = (CallState.FINISHED, CallState.FAILED, CallState.EXPIRED)
    ids = [finished.instruction_id, failing.instruction_id, otp.instruction_id]
    wait_for(lambda: all(state_of(runtime, iid) in ended for iid in [*ids, "refused-by-cm"]))
    samples = wait_for(
        lambda: (page := scrape(url)) and total(page, "cmvoice_outcomes_total") >= 3 and page
    )

    # Then it counts the calls CM accepted by kind, the refusal by its reason, the expired
    # call under the deadline rule and each outcome by its result code
    assert value(samples, "cmvoice_calls_placed_total", kind="notification") == 2
    assert value(samples, "cmvoice_calls_placed_total", kind="otp") == 1
    assert value(samples, "cmvoice_calls_placed_total", kind="dtmf") == 0
    assert value(samples, "cmvoice_dispatch_failures_total", reason="refused") == 1
    assert total(samples, "cmvoice_dispatch_failures_total") == 1
    assert state_of(runtime, late.instruction_id) is CallState.EXPIRED
    assert value(samples, "cmvoice_calls_refused_total", rule="deadline") == 1
    assert value(samples, "cmvoice_outcomes_total", code="10") == 2
    assert value(samples, "cmvoice_outcomes_total", code="11") == 1
    assert value(samples, "cmvoice_outcomes_total", code="other") == 0
    # and every dispatch that took a rate turn was timed (the refused one too)
    assert value(samples, "cmvoice_rate_wait_seconds_count") == 4
    # and, read from Redis, every slot is free again and nothing waits or is in flight
    assert value(samples, "cmvoice_redis_up") == 1
    assert value(samples, "cmvoice_concurrency_slots_in_use") == 0
    assert value(samples, "cmvoice_concurrency_slots_limit") == 50
    assert total(samples, "cmvoice_backlog_calls") == 0
    assert total(samples, "cmvoice_calls_in_flight") == 0
    assert value(samples, "cmvoice_token_refused") == 0
    # and the labels hold no instruction id and no number
    page = requests.get(url, timeout=10).text
    assert finished.instruction_id not in page
    assert CALLEE.lstrip("+") not in page


def test_the_gauges_show_a_campaign_backlog_ready_then_paused_and_the_token_breaker(
    stack: Stack, tmp_path: Path
) -> None:
    # Given metrics served from this process, with no worker (and so no pacer) running
    runtime = get_runtime()
    server = metrics.serve("127.0.0.1", free_port(), metrics.WorkerMetrics(get_runtime))
    try:
        # When a campaign of three calls starts
        path = tmp_path / "calls.csv"
        path.write_text("callee\n+31612345620\n+31612345621\n+31612345622\n", encoding="utf-8")
        report = start_campaign(
            runtime, path, "notification", template={"caller": CALLER, "prompt": "Hello."}
        )
        running = scrape(server.url)
        # and is paused
        control.pause(CampaignStore(runtime), report.campaign_id)
        paused = scrape(server.url)
        # and CM refuses the product token
        runtime.reject_token(60)
        refused = scrape(server.url)
    finally:
        server.close()

    # Then its calls are ready in the campaign lane, then held by the pause
    assert value(running, "cmvoice_backlog_calls", lane="campaign", status="ready") == 3
    assert value(running, "cmvoice_backlog_calls", lane="interactive", status="ready") == 0
    assert value(paused, "cmvoice_backlog_calls", lane="campaign", status="ready") == 0
    assert value(paused, "cmvoice_backlog_calls", lane="campaign", status="paused") == 3
    # and the breaker shows while it holds
    assert value(paused, "cmvoice_token_refused") == 0
    assert value(refused, "cmvoice_token_refused") == 1


def test_every_refusal_at_enqueue_is_counted_once_by_its_rule(stack: Stack) -> None:
    # Given one call allowed per number, Dutch numbers only, and a suppressed number
    stack.make_runtime(per_number_limit="1/10m", allowed_countries="NL")
    suppressed = "+31612345620"
    SuppressionList(get_runtime()).add([suppressed])
    enqueue(notification())
    server = metrics.serve("127.0.0.1", free_port(), metrics.WorkerMetrics(get_runtime))

    # When enqueue() refuses the suppressed number, the limited one twice and a Belgian one
    refusals = [notification(suppressed), notification(), notification(), notification(BELGIAN)]
    rules = []
    for call in refusals:
        with pytest.raises(CallNotAllowed) as refused:
            enqueue(call)
        rules.append(refused.value.rule)
    try:
        samples = scrape(server.url)
    finally:
        server.close()

    # Then each refusal is counted once, under the rule it named
    assert rules == ["suppressed", "per_number_limit", "per_number_limit", "country"]
    refused_total = "cmvoice_calls_refused_total"
    counted = {rule: value(samples, refused_total, rule=rule) for rule in set(rules)}
    assert counted == {"suppressed": 1, "per_number_limit": 2, "country": 1}
    assert total(samples, refused_total) == len(refusals)


def test_a_scrape_while_redis_is_unreachable_still_serves_the_counters() -> None:
    # Given a worker's metrics whose Redis does not answer
    settings = Settings(broker_url=f"redis://127.0.0.1:{free_port()}/0", api_url=SIMULATOR_API_URL)
    unreachable = Runtime.from_settings(settings)
    worker_metrics = metrics.WorkerMetrics(lambda: unreachable)
    worker_metrics.count_placed("notification")
    server = metrics.serve("127.0.0.1", free_port(), worker_metrics)

    # When Prometheus scrapes it
    try:
        started = time.monotonic()
        samples = scrape(server.url)
        elapsed_s = time.monotonic() - started
    finally:
        server.close()
        unreachable.close()

    # Then the page still comes, promptly, with the counters and without made-up gauges
    assert value(samples, "cmvoice_calls_placed_total", kind="notification") == 1
    assert value(samples, "cmvoice_redis_up") == 0
    assert value(samples, "cmvoice_concurrency_slots_limit") == settings.max_concurrent_calls
    assert not any(name == "cmvoice_backlog_calls" for name, _ in samples)
    assert elapsed_s < 5
