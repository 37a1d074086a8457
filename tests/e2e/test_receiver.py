"""The callback receiver over real HTTP: authentication, refusals, duplicates, broker outages."""

from __future__ import annotations

import json
import logging
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmvoice.calls import CallState
from cmvoice.embedded_redis import EmbeddedRedis, free_port
from cmvoice.ledger import CallLedger
from cmvoice.messages import RESULTS_QUEUE
from cmvoice.runtime import get_runtime
from cmvoice.signing import callback_url, sign, verify
from cmvoice.tasks.maintenance import reconcile
from tests.support.broker import message_text, queue_length, take_messages
from tests.support.callbacks import cm_callback
from tests.support.raw_http import raw_post
from tests.support.stack import CALLEE, CALLER, TEST_SECRET, Stack, wait_for
from tests.support.workers import CMVOICE, WorkerProcess, worker_env

CALL_ID = "6d0f176e-00ac-4de2-a04d-b3f7c895adb0"


def results_waiting(count: int) -> bool:
    """Whether ``count`` handle_result messages wait on the broker (RabbitMQ routes a publish a
    moment after the publisher returns: a count above zero is waited for)."""
    if count == 0:
        return queue_length(RESULTS_QUEUE) == 0
    wait_for(lambda: queue_length(RESULTS_QUEUE) >= count, timeout_s=5)
    return queue_length(RESULTS_QUEUE) == count


def answers(url: str) -> bool:
    """Whether an HTTP server answers at ``url``, whatever its status."""
    try:
        requests.get(url, timeout=5)
    except requests.ConnectionError:
        return False
    return True


def post(url: str, body: Any, **kwargs: Any) -> requests.Response:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return requests.post(url, data=data, timeout=10, **kwargs)


# --- signing: a pure function ------------------------------------------------------------


def test_a_signature_verifies_only_for_its_own_id_and_secret() -> None:
    signature = sign("call-1", "secret")
    assert verify("call-1", signature, "secret")
    assert not verify("call-2", signature, "secret")
    assert not verify("call-1", signature, "other-secret")
    assert not verify("call-1", signature[:-1] + "0", "secret") or signature.endswith("0")
    assert not verify("call-1", "é" * 32, "secret"), "a non-ASCII signature is refused, not a crash"


def test_the_callback_url_fits_cms_256_characters_for_the_longest_id() -> None:
    url = callback_url("https://callbacks.example.com/cmvoice", "x" * 64, "secret")
    assert len(url) <= 256
    assert url.startswith("https://callbacks.example.com/cmvoice/callbacks/cm/" + "x" * 64 + "/")


# --- refusals: nothing published, ledger unchanged ----------------------------------------


@pytest.fixture
def placed_call(stack: Stack) -> str:
    """A PLACED record, as if dispatch had just POSTed it."""
    ledger = get_runtime().ledger
    ledger.create("placed-1", "notification", {"callee": CALLEE, "caller": CALLER, "prompt": "x"})
    claim = ledger.claim("placed-1", lease_s=30)
    assert not isinstance(claim, CallState | None)
    ledger.mark_sending(claim, lease_s=30)
    ledger.placed(claim, CALL_ID)
    return "placed-1"


def signed_url(stack: Stack, instruction_id: str) -> str:
    return callback_url(stack.receiver_url, instruction_id, TEST_SECRET)


@pytest.mark.parametrize(
    ("case", "expected_status"),
    [
        ("forged signature", 403),
        ("mismatched id", 403),
        ("malformed json", 400),
        ("oversize body", 413),
        ("unknown type", 422),
        ("missing fields", 422),
    ],
)
def test_a_bad_callback_gets_a_4xx_and_changes_nothing(
    stack: Stack, placed_call: str, case: str, expected_status: int
) -> None:
    url = signed_url(stack, placed_call)
    body: Any = cm_callback(placed_call, CALL_ID)
    if case == "forged signature":
        url = f"{stack.receiver_url}/callbacks/cm/{placed_call}/{'0' * 32}"
    elif case == "mismatched id":
        body = cm_callback("another-call", CALL_ID)
    elif case == "malformed json":
        body = b'{"type": "notification-finished",'
    elif case == "oversize body":
        body = cm_callback(placed_call, CALL_ID, padding="x" * 100_000)
    elif case == "unknown type":
        body = {**body, "type": "sms-finished"}
    elif case == "missing fields":
        body = {"type": "notification-finished", "instruction-id": placed_call}

    response = post(url, body)

    assert response.status_code == expected_status, response.text
    assert results_waiting(0)
    record = get_runtime().ledger.get(placed_call)
    assert record is not None
    assert record.state is CallState.PLACED
    assert CALLEE not in response.text


def test_a_refused_callback_says_why_in_its_body(stack: Stack, placed_call: str) -> None:
    response = post(
        signed_url(stack, placed_call), {**cm_callback(placed_call, CALL_ID), "type": "x"}
    )
    assert response.status_code == 422
    assert "unknown event type" in response.json()["message"]


@pytest.mark.rabbitmq
def test_the_same_callback_posted_three_times_is_published_once(
    stack: Stack, placed_call: str
) -> None:
    url = signed_url(stack, placed_call)

    statuses = [post(url, cm_callback(placed_call, CALL_ID)).status_code for _ in range(3)]

    assert statuses == [204, 204, 204]
    assert results_waiting(1)
    metrics = requests.get(stack.receiver_url + "/metrics", timeout=5).text
    assert 'cmvoice_callbacks_total{code="10",type="notification-finished"} 1.0' in metrics
    assert 'cmvoice_callbacks_rejected_total{reason="duplicate"} 2.0' in metrics


@pytest.mark.rabbitmq
def test_the_published_task_carries_no_phone_number(stack: Stack, placed_call: str) -> None:
    post(signed_url(stack, placed_call), cm_callback(placed_call, CALL_ID))

    wait_for(lambda: queue_length(RESULTS_QUEUE) == 1, timeout_s=5)
    [message] = take_messages(RESULTS_QUEUE)

    assert message["headers"]["task"] == "cmvoice.handle_result"
    text = message_text(message)
    assert placed_call in text
    for number in (CALLEE, CALLER, CALLEE[1:]):
        assert number not in text


def test_health_and_metrics_answer(stack: Stack) -> None:
    health = requests.get(stack.receiver_url + "/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    metrics = requests.get(stack.receiver_url + "/metrics", timeout=5)
    assert "cmvoice_callback_publish_seconds" in metrics.text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"type": st.sampled_from(["notification-finished", "dtmf-finished", "x"])},
            optional={
                "call-id": st.one_of(st.just(CALL_ID), st.text(max_size=40)),
                "instruction-id": st.one_of(st.just("placed-1"), st.text(max_size=70)),
                "result": json_values,
                "started-on": st.one_of(st.text(max_size=30), st.just("2026-02-09T11:00:31Z")),
                "finished-on": st.one_of(st.text(max_size=30), st.just("2026-02-09T11:00:31Z")),
                "digits": json_values,
            },
        ),
    ),
    signature=st.one_of(st.just("valid"), st.text(min_size=1, max_size=40)),
)
def test_generated_callbacks_never_get_a_5xx_while_the_broker_is_up(
    stack: Stack, body: Any, signature: str
) -> None:
    sig = sign("placed-1", TEST_SECRET) if signature == "valid" else signature
    url = f"{stack.receiver_url}/callbacks/cm/placed-1/{requests.utils.quote(sig, safe='')}"

    response = post(url, body)

    assert response.status_code < 500, response.text


# --- hostile bodies: a 4xx, never a 5xx that CM would retry -----------------------------------


def rejected_count(stack: Stack, reason: str) -> float:
    metrics = requests.get(stack.receiver_url + "/metrics", timeout=5).text
    line = f'cmvoice_callbacks_rejected_total{{reason="{reason}"}} '
    return sum(
        float(row.removeprefix(line)) for row in metrics.splitlines() if row.startswith(line)
    )


@pytest.mark.parametrize(
    ("body", "reason", "message"),
    [
        (
            b"[" * 3000 + b"]" * 3000,
            "too_deep",
            "JSON nesting: deeper than the limit of 32 levels",
        ),
        (
            b'{"type": "notification-finished", "result": {"code": ' + b"9" * 5000 + b"}}",
            "number_too_long",
            "JSON number: 5000 characters, over the limit of 100",
        ),
    ],
    ids=["nested 3,000 deep", "an integer of 5,000 digits"],
)
def test_a_body_json_loads_would_crash_on_gets_400_and_a_valid_callback_then_gets_204(
    stack: Stack, placed_call: str, body: bytes, reason: str, message: str
) -> None:
    # Given a signed URL
    url = signed_url(stack, placed_call)

    # When a body json.loads cannot parse without an exception is posted, then a valid one
    refused = post(url, body)
    accepted = post(url, cm_callback(placed_call, CALL_ID))

    # Then the first gets 400, saying which limit it broke, and is counted; the second is taken
    assert refused.status_code == 400, refused.text
    assert refused.json() == {"error": reason, "message": f"body refused: {message}"}
    assert rejected_count(stack, reason) == 1
    assert accepted.status_code == 204, accepted.text
    assert results_waiting(1)


def test_a_timestamp_with_no_utc_equivalent_gets_422_not_500(
    stack: Stack, placed_call: str
) -> None:
    # Given a callback whose answered-on is a valid ISO time that falls before year 1 in UTC
    body = cm_callback(placed_call, CALL_ID, **{"answered-on": "0001-01-01T00:00:00+01:00"})

    # When
    response = post(signed_url(stack, placed_call), body)

    # Then it is refused for that field, and nothing is published
    assert response.status_code == 422, response.text
    assert "answered-on: the time is out of range once converted to UTC" in response.text
    assert results_waiting(0)


def test_a_client_that_leaves_mid_body_is_counted_and_crashes_nothing(
    stack: Stack, placed_call: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a client that announces 100 bytes of body, sends 10 and ends its side
    caplog.set_level(logging.ERROR)
    path = urlsplit(signed_url(stack, placed_call)).path
    raw_post(stack.receiver_url, path, (b"Content-Length: 100",), b'{"type": "', end_input=True)

    # When the receiver has seen the body end early
    wait_for(lambda: rejected_count(stack, "disconnected") == 1, timeout_s=5)

    # Then no exception reached uvicorn's log, and the next callback is taken as usual
    assert [record.getMessage() for record in caplog.records] == []
    assert (
        post(signed_url(stack, placed_call), cm_callback(placed_call, CALL_ID)).status_code == 204
    )


# --- UNKNOWN resolution --------------------------------------------------------------------


@pytest.mark.rabbitmq
def test_a_callback_for_an_unknown_call_settles_it_and_nothing_is_redialed(
    stack: Stack, worker: Any
) -> None:
    # Given a call whose POST timed out: UNKNOWN
    ledger = get_runtime().ledger
    ledger.create("unknown-1", "notification", {"callee": CALLEE, "caller": CALLER, "prompt": "x"})
    claim = ledger.claim("unknown-1", lease_s=30)
    assert not isinstance(claim, CallState | None)
    ledger.mark_sending(claim, lease_s=30)
    ledger.unknown(claim, "read timeout")

    # When CM's callback arrives after all
    assert (
        post(signed_url(stack, "unknown-1"), cm_callback("unknown-1", CALL_ID)).status_code == 204
    )

    # Then the call is FINISHED, and the reconciler dispatches nothing
    wait_for(lambda: ledger.get("unknown-1").state is CallState.FINISHED)
    reconcile(get_runtime())
    record = ledger.get("unknown-1")
    assert record is not None
    assert record.state is CallState.FINISHED
    assert record.get_int("posts") == 1
    assert stack.calls() == []


# --- broker outage ---------------------------------------------------------------------------


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(data_dir=tmp_path / "redis", persistent=True)
    with server:
        yield server


@pytest.mark.redis_broker
@pytest.mark.slow
def test_with_the_broker_down_callbacks_get_503_and_a_retry_later_is_handled(
    own_broker: EmbeddedRedis, tmp_path: Path
) -> None:
    # Given a receiver process on its own broker, and a placed call in that broker's ledger
    port = free_port()
    settings = {
        "broker_url": own_broker.url,
        "callback_secret": "outage-secret",
        "api_url": "http://127.0.0.1:9/voiceapi/v2",  # no CM here: the simulator's token
    }
    log = (tmp_path / "receiver.log").open("wb")
    receiver = subprocess.Popen(
        [CMVOICE, "receiver", "--port", str(port), "--log-level", "warning"],
        env=worker_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    ledger = CallLedger(redis.Redis.from_url(own_broker.url))
    iid = str(uuid.uuid4())
    ledger.create(iid, "notification", {"callee": CALLEE, "caller": CALLER, "prompt": "x"})
    claim = ledger.claim(iid, lease_s=60)
    assert not isinstance(claim, CallState | None)
    ledger.mark_sending(claim, lease_s=60)
    ledger.placed(claim, CALL_ID)
    url = callback_url(base, iid, "outage-secret")

    def receiver_up() -> bool:
        try:
            return requests.get(base + "/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    worker: WorkerProcess | None = None
    try:
        wait_for(receiver_up, timeout_s=20, interval_s=0.1)

        # When the broker goes down, CM's callback is answered 503 (so CM may retry)
        own_broker.stop()
        assert post(url, cm_callback(iid, CALL_ID)).status_code == 503
        assert requests.get(base + "/healthz", timeout=10).status_code == 503

        # And when it is back, the retried callback is accepted and handled
        own_broker.start()
        response = post(url, cm_callback(iid, CALL_ID))
        assert response.status_code == 204, response.text
        worker = WorkerProcess(settings, tmp_path / "worker.log", name="outage")
        wait_for(lambda: ledger.get(iid).state is CallState.FINISHED, timeout_s=30)
    finally:
        if worker is not None:
            worker.stop()
        receiver.terminate()
        receiver.wait(10)
        log.close()
    record = ledger.get(iid)
    assert record is not None
    assert record.get("result_code") == "10"


def test_with_rabbitmq_unreachable_callbacks_get_503_and_healthz_says_so(
    stack: Stack, placed_call: str, tmp_path: Path
) -> None:
    # Given a receiver process whose broker is a RabbitMQ that does not answer (nothing listens
    # on its port), its ledger the test's Redis
    port = free_port()
    settings = {"broker_url": f"amqp://guest:guest@127.0.0.1:{free_port()}//"}
    settings["redis_url"] = stack.redis_url
    log = (tmp_path / "receiver.log").open("wb")
    receiver = subprocess.Popen(
        [CMVOICE, "receiver", "--port", str(port), "--log-level", "warning"],
        env=worker_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(base + "/healthz"), timeout_s=20, interval_s=0.1)

        # When it is asked for its health, and CM posts a callback, twice
        health = requests.get(base + "/healthz", timeout=10)
        url = callback_url(base, placed_call, TEST_SECRET)
        statuses = [post(url, cm_callback(placed_call, CALL_ID)).status_code for _ in range(2)]
    finally:
        receiver.terminate()
        receiver.wait(10)
        log.close()

    # Then it says the broker is unavailable, and each callback gets 503 (CM tries again), not
    # a 204 for a callback it could not hand on, nor "duplicate" for the second try
    assert health.status_code == 503, health.text
    assert health.json()["status"] == "unavailable"
    assert "broker" in health.json()
    assert statuses == [503, 503]
    assert get_runtime().ledger.get(placed_call).state is CallState.PLACED
