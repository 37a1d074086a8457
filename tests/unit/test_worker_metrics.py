"""Worker metrics: each failed POST gets its bounded reason, and no label grows without bound."""

from __future__ import annotations

import pytest
from prometheus_client import Counter

from cmvoice.errors import (
    AuthenticationFailed,
    CmThrottled,
    CmUnavailable,
    CmUnreachable,
    OutcomeUnknown,
    RequestRefused,
    VoiceApiError,
)
from cmvoice.metrics import FAILURE_REASONS, WorkerMetrics, failure_reason
from cmvoice.retrying import RetryPolicy

#: Error attempts a call may spend before its retries run out, in these tests.
MAX_RETRIES = 3


def counted(counter: Counter, **labels: str) -> float:
    """A counter's value for ``labels``, read through its public collect()."""
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no sample with {labels}")


@pytest.mark.parametrize(
    ("error", "attempts", "reason"),
    [
        (RequestRefused("400", status_code=400), 0, "refused"),
        (AuthenticationFailed("401", status_code=401), 0, "bad_token"),
        (OutcomeUnknown("read timeout"), 0, "unknown"),
        (OutcomeUnknown("500", status_code=500), 0, "unknown"),
        (CmThrottled("429", retry_after_s=1.0), MAX_RETRIES, "throttled"),
        (CmUnavailable("503", status_code=503), 0, "unavailable"),
        (CmUnreachable("connection refused"), 1, "unreachable"),
        (CmUnavailable("503", status_code=503), MAX_RETRIES, "retries_exhausted"),
        (CmUnreachable("connection refused"), MAX_RETRIES, "retries_exhausted"),
        (VoiceApiError("something CM never documented"), 0, "unknown"),
    ],
)
def test_a_failed_post_is_counted_under_the_reason_the_retry_policy_implies(
    error: VoiceApiError, attempts: int, reason: str
) -> None:
    # Given the policy's decision about the error after some attempts
    decision = RetryPolicy(MAX_RETRIES).decide(error, attempts)
    metrics = WorkerMetrics()

    # When the failure is counted
    metrics.count_failure(error, decision.action)

    # Then it is under its reason, and nowhere else
    assert failure_reason(error, decision.action) == reason
    assert counted(metrics.dispatch_failures, reason=reason) == 1
    others = [counted(metrics.dispatch_failures, reason=r) for r in FAILURE_REASONS if r != reason]
    assert others == [0] * (len(FAILURE_REASONS) - 1)


def test_values_outside_the_known_ones_are_counted_as_other() -> None:
    # Given a worker's metrics
    metrics = WorkerMetrics()

    # When a kind and a result code nobody listed are counted
    metrics.count_placed("fax")
    metrics.count_outcome(42)

    # Then they land in `other`, so the number of series stays bounded
    assert counted(metrics.calls_placed, kind="other") == 1
    assert counted(metrics.outcomes, code="other") == 1
    assert counted(metrics.outcomes, code="10") == 0


def test_every_known_label_value_is_exposed_at_zero_before_anything_happens() -> None:
    # Given a worker that has done nothing yet
    metrics = WorkerMetrics()

    # Then every kind, reason and code already has its series (rate() needs a start)
    assert counted(metrics.calls_placed, kind="dtmf") == 0
    assert counted(metrics.dispatch_failures, reason="unknown") == 0
    assert counted(metrics.outcomes, code="9") == 0
