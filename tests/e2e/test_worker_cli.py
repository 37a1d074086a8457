"""``cmvoice worker`` refuses to start on a bad configuration, naming the variable."""

from __future__ import annotations

import subprocess

from tests.support.workers import CMVOICE, worker_env


def test_a_worker_without_a_token_for_cm_stops_at_start_naming_the_variable() -> None:
    # Given CM's real API URL and no product token
    env = worker_env({})
    env.pop("CMVOICE_PRODUCT_TOKEN", None)
    env.pop("CMVOICE_API_URL", None)

    # When a worker is started
    result = subprocess.run(
        [CMVOICE, "worker"], env=env, capture_output=True, text=True, timeout=60
    )

    # Then it exits at once with a message naming the variable, not a traceback
    assert result.returncode == 1
    assert "CMVOICE_PRODUCT_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_rate_limit_stops_the_worker_naming_the_variable() -> None:
    env = worker_env({"rate_limit": "fast", "api_url": "http://127.0.0.1:9/voiceapi/v2"})

    result = subprocess.run(
        [CMVOICE, "worker"], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 1
    assert "CMVOICE_RATE_LIMIT" in result.stderr
    assert "Traceback" not in result.stderr
