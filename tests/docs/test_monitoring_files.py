"""The Grafana dashboard and the Prometheus files name only metrics and jobs that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cmvoice import metrics
from cmvoice.receiver import ReceiverMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "deploy/grafana/cmvoice.json").read_text(encoding="utf-8"))
ALERTS = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text(encoding="utf-8"))
PROMETHEUS = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text("utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
#: The scrape jobs the files and the README document.
JOBS = {"cmvoice-worker", "cmvoice-receiver"}
#: Suffixes a client library adds to a family's name in its samples.
SAMPLE_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")
#: Label values of the worker's metrics, as its module bounds them.
WORKER_LABELS = {
    "kind": {*metrics.KINDS, metrics.OTHER},
    "reason": {*metrics.FAILURE_REASONS, metrics.OTHER},
    "rule": {*metrics.REFUSAL_RULES, metrics.OTHER},
    "code": {*(str(code) for code in metrics.RESULT_CODES), metrics.OTHER},
    "status": set(metrics.BACKLOG_STATUSES),
    "state": set(metrics.IN_FLIGHT_STATES),
    "lane": {"interactive", "campaign"},
}


def dashboard_expressions() -> list[str]:
    return [target["expr"] for panel in DASHBOARD["panels"] for target in panel["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in ALERTS["groups"] for rule in group["rules"]]


def alert_expressions() -> list[str]:
    return [rule["expr"] for rule in alert_rules()]


def family(sample_name: str) -> str:
    """``cmvoice_rate_wait_seconds_bucket`` -> ``cmvoice_rate_wait_seconds``."""
    for suffix in SAMPLE_SUFFIXES:
        if sample_name.endswith(suffix):
            return sample_name[: -len(suffix)]
    return sample_name


def metric_names(expression: str) -> set[str]:
    """The metric families a PromQL expression reads: ``cmvoice_*`` names, and ``up``."""
    names = {family(name) for name in re.findall(r"\bcmvoice_[a-z0-9_]+", expression)}
    return names | ({"up"} if re.search(r"\bup\s*\{", expression) else set())


def exposed_names() -> set[str]:
    worker = metrics.WorkerMetrics().names()
    receiver = {item.name for item in ReceiverMetrics().registry.collect()}
    return worker | receiver | {"up"}


@pytest.mark.parametrize(
    "source", ["dashboard", "alerts"], ids=["grafana dashboard", "prometheus alerts"]
)
def test_every_metric_a_monitoring_file_names_is_exposed(source: str) -> None:
    # Given the expressions of the file
    expressions = dashboard_expressions() if source == "dashboard" else alert_expressions()

    # When the metrics they read are collected
    named = set().union(*(metric_names(expression) for expression in expressions))

    # Then each is exposed by a worker's or the receiver's registry (or is Prometheus's `up`)
    assert named, "the file reads metrics"
    assert named <= exposed_names(), named - exposed_names()


def test_the_dashboard_shows_every_worker_metric_and_the_receivers_callbacks() -> None:
    # Given the metrics the dashboard reads
    shown = set().union(*(metric_names(expression) for expression in dashboard_expressions()))

    # Then none of the worker's metrics is left out, nor the receiver's callback counters
    assert metrics.WorkerMetrics().names() <= shown, metrics.WorkerMetrics().names() - shown
    assert {"cmvoice_callbacks", "cmvoice_callbacks_rejected"} <= shown


def test_the_label_values_the_files_select_are_ones_the_worker_emits() -> None:
    # Given every `label="value"` matcher on a worker metric in both files
    expressions = dashboard_expressions() + alert_expressions()
    worker = metrics.WorkerMetrics().names()
    matchers = [
        (name, label, value)
        for expression in expressions
        for name, selector in re.findall(r"\b(cmvoice_[a-z0-9_]+)\{([^}]*)\}", expression)
        if family(name) in worker
        for label, value in re.findall(r'(\w+)="([^"]*)"', selector)
    ]

    # Then each selects a value the worker's metrics can have
    assert matchers
    unknown = [m for m in matchers if m[2] not in WORKER_LABELS.get(m[1], set())]
    assert not unknown, unknown


def test_the_alerts_cover_stalls_the_token_unknowns_forgeries_and_the_receiver() -> None:
    # Given the alerting rules
    rules = alert_rules()
    by_expression = " ".join(alert_expressions())

    # Then each rule is complete, and together they watch what an operator must hear about
    for rule in rules:
        assert rule["alert"].startswith("Cmvoice"), rule
        assert rule["labels"]["severity"] in ("warning", "critical"), rule
        assert rule["annotations"]["summary"], rule
    assert "cmvoice_backlog_calls" in by_expression
    assert "cmvoice_calls_placed_total" in by_expression
    assert "cmvoice_token_refused" in by_expression
    assert 'cmvoice_dispatch_failures_total{reason="unknown"}' in by_expression
    assert 'cmvoice_callbacks_rejected_total{reason="bad_signature"}' in by_expression
    assert 'up{job="cmvoice-receiver"} == 0' in by_expression


def test_the_scrape_jobs_are_the_ones_the_files_and_the_readme_name() -> None:
    # Given the example Prometheus configuration
    jobs = {config["job_name"] for config in PROMETHEUS["scrape_configs"]}
    expressions = " ".join(dashboard_expressions() + alert_expressions())
    used = set(re.findall(r'job="([^"]+)"', expressions))

    # Then it scrapes the documented jobs, loads the alerts, and every job used is one of them
    assert jobs == JOBS
    assert PROMETHEUS["rule_files"] == ["alerts.yml"]
    assert used <= JOBS, used - JOBS
    for job in JOBS:
        assert f"`{job}`" in README, f"the README names the scrape job {job}"
