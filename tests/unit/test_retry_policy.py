"""RetryPolicy: every row of the dispatch table, the backoff and its jitter, without CM."""

from __future__ import annotations

import pytest

from cmvoice.errors import (
    AuthenticationFailed,
    CmThrottled,
    CmUnavailable,
    CmUnreachable,
    OutcomeUnknown,
    RequestRefused,
    VoiceApiError,
)
from cmvoice.retrying import DEFAULT_THROTTLE_WAIT_S, RetryPolicy

#: Error retries the policies below allow.
MAX_RETRIES = 3


class NoJitter(RetryPolicy):
    """The policy with the whole backoff every time, so that delays are exact."""

    def jitter(self, delay_s: float) -> float:
        return delay_s


def unreachable() -> VoiceApiError:
    return CmUnreachable("POST /notification: connect timeout, CM never received the request")


def unavailable(status: int) -> VoiceApiError:
    return CmUnavailable(f"POST /notification: CM answered {status}", status_code=status)


@pytest.mark.parametrize("attempts", [0, 2, MAX_RETRIES, 50])
@pytest.mark.parametrize(
    ("retry_after_s", "delay_s"), [(7.0, 7.0), (0.0, 0.0), (None, DEFAULT_THROTTLE_WAIT_S)]
)
def test_a_429_waits_what_cm_asked_and_spends_no_attempt(
    attempts: int, retry_after_s: float | None, delay_s: float
) -> None:
    # Given CM throttles, with or without a Retry-After, however many errors came before
    throttled = CmThrottled("POST /notification: CM answered 429", retry_after_s=retry_after_s)

    # When the policy decides
    decision = RetryPolicy(MAX_RETRIES).decide(throttled, attempts)

    # Then the call is tried again after CM's wait, and the error budget is untouched
    assert decision.action == "retry"
    assert decision.delay_s == delay_s
    assert decision.counts_as_attempt is False


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationFailed("POST /otp: CM answered 401", status_code=401),
        AuthenticationFailed("POST /otp: CM answered 403", status_code=403),
        RequestRefused("POST /otp: CM answered 400", status_code=400),
        RequestRefused("POST /otp: CM answered 404", status_code=404),
        RequestRefused("POST /otp: CM answered 422", status_code=422),
    ],
    ids=["401", "403", "400", "404", "422"],
)
@pytest.mark.parametrize("attempts", [0, 1])
def test_a_refused_request_or_token_fails_at_once_with_cms_reason(
    error: VoiceApiError, attempts: int
) -> None:
    # Given CM refused the request or the token
    # When the policy decides, on the first attempt or a later one
    decision = RetryPolicy(MAX_RETRIES).decide(error, attempts)

    # Then the call fails now, saying what CM answered, and nothing waits
    assert decision.action == "fail"
    assert decision.reason == str(error)
    assert decision.delay_s == 0.0
    assert decision.counts_as_attempt is True


@pytest.mark.parametrize(
    "error",
    [
        OutcomeUnknown("POST /otp: no answer within the read timeout; may be placed"),
        OutcomeUnknown(
            "POST /otp: CM answered 500; the call may have been placed", status_code=500
        ),
        OutcomeUnknown("POST /otp: connection broken after sending (ConnectionError)"),
    ],
    ids=["read timeout", "500", "reset after sending"],
)
@pytest.mark.parametrize("attempts", [0, MAX_RETRIES])
def test_an_answer_that_may_have_placed_the_call_is_never_retried_blindly(
    error: VoiceApiError, attempts: int
) -> None:
    # Given the POST went out and no usable answer came back
    # When the policy decides
    decision = RetryPolicy(MAX_RETRIES).decide(error, attempts)

    # Then the outcome is unknown: no retry that could ring the callee twice
    assert decision.action == "unknown"
    assert decision.reason == str(error)
    assert decision.delay_s == 0.0


def test_an_unknown_error_class_that_is_not_retryable_counts_as_unknown() -> None:
    # Given a VoiceApiError of no known leaf, which does not say it is safe to send again
    error = VoiceApiError("POST /otp: something odd")

    # When the policy decides
    decision = RetryPolicy(MAX_RETRIES).decide(error, 0)

    # Then it is treated like a possibly placed call
    assert decision.action == "unknown"


@pytest.mark.parametrize(
    "error",
    [unreachable(), unavailable(502), unavailable(503), unavailable(504)],
    ids=["unreachable", "502", "503", "504"],
)
@pytest.mark.parametrize(("attempts", "delay_s"), [(0, 1.0), (1, 2.0), (2, 4.0)])
def test_a_call_that_never_reached_cm_is_retried_with_a_doubling_backoff(
    error: VoiceApiError, attempts: int, delay_s: float
) -> None:
    # Given CM was not reached or not serving, with error attempts left
    policy = NoJitter(MAX_RETRIES, backoff_base_s=1.0, backoff_max_s=60.0)

    # When the policy decides
    decision = policy.decide(error, attempts)

    # Then it retries after base * 2^attempts, and this counts as an attempt
    assert decision.action == "retry"
    assert decision.delay_s == delay_s
    assert decision.counts_as_attempt is True
    assert decision.reason == str(error)


@pytest.mark.parametrize(
    "error",
    [unreachable(), unavailable(502), unavailable(503), unavailable(504)],
    ids=["unreachable", "502", "503", "504"],
)
@pytest.mark.parametrize("attempts", [MAX_RETRIES, MAX_RETRIES + 5])
def test_after_max_retries_a_retryable_error_gives_up_saying_how_many_attempts(
    error: VoiceApiError, attempts: int
) -> None:
    # Given every error retry was spent
    # When the policy decides
    decision = NoJitter(MAX_RETRIES).decide(error, attempts)

    # Then the call fails, counting the first attempt too, and keeps CM's reason
    assert decision.action == "fail"
    assert decision.reason == f"gave up after {attempts + 1} attempts: {error}"


def test_with_no_retries_allowed_the_first_error_gives_up() -> None:
    # Given a policy that allows no error retry
    # When CM is unreachable on the first attempt
    decision = NoJitter(0).decide(unreachable(), 0)

    # Then the call fails at once
    assert decision.action == "fail"
    assert decision.reason.startswith("gave up after 1 attempt")


@pytest.mark.parametrize(
    ("base_s", "max_s", "attempts", "delay_s"),
    [
        (1.0, 60.0, 0, 1.0),
        (1.0, 60.0, 5, 32.0),
        (1.0, 60.0, 6, 60.0),
        (1.0, 60.0, 30, 60.0),
        (0.25, 60.0, 3, 2.0),
        (10.0, 15.0, 1, 15.0),
        (2.0, 1.0, 0, 1.0),
    ],
)
def test_the_backoff_doubles_per_attempt_up_to_its_cap(
    base_s: float, max_s: float, attempts: int, delay_s: float
) -> None:
    # Given a policy without jitter
    policy = NoJitter(MAX_RETRIES, backoff_base_s=base_s, backoff_max_s=max_s)

    # When / Then
    assert policy.backoff_s(attempts) == delay_s


@pytest.mark.parametrize("delay_s", [0.0, 1.0, 7.5, 60.0])
def test_equal_jitter_lies_between_half_the_delay_and_the_whole_of_it(delay_s: float) -> None:
    # Given the real policy's jitter
    policy = RetryPolicy(MAX_RETRIES)

    # When it jitters the same delay many times
    draws = [policy.jitter(delay_s) for _ in range(1000)]

    # Then every draw is within [delay/2, delay], and the draws spread over that range
    assert all(delay_s / 2 <= draw <= delay_s for draw in draws)
    if delay_s:
        assert min(draws) < 0.6 * delay_s
        assert max(draws) > 0.9 * delay_s


def test_the_jittered_backoff_never_exceeds_the_cap() -> None:
    # Given a policy capped at 5 s
    policy = RetryPolicy(MAX_RETRIES, backoff_base_s=1.0, backoff_max_s=5.0)

    # When many backoffs are drawn far past the cap
    draws = [policy.backoff_s(attempts) for attempts in range(3, 40) for _ in range(20)]

    # Then each is between half the cap and the cap
    assert all(2.5 <= draw <= 5.0 for draw in draws)


@pytest.mark.parametrize("attempts", [1023, 1024, 5000])
def test_the_backoff_stays_at_its_cap_however_many_attempts_were_spent(attempts: int) -> None:
    # Given a policy allowed many retries (CMVOICE_MAX_DISPATCH_RETRIES has no upper bound)
    policy = NoJitter(10_000, backoff_base_s=1.0, backoff_max_s=60.0)

    # When CM is still unreachable after more than a thousand attempts
    decision = policy.decide(unreachable(), attempts)

    # Then the call is retried after the cap, not failed by an overflow
    assert decision.action == "retry"
    assert decision.delay_s == 60.0
