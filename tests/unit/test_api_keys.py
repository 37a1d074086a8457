"""API keys: which keys CMVOICE_API_KEYS accepts, and what the check lets through."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from cmvoice.api.auth import ApiKeyCheck, configured_keys
from cmvoice.config import Settings, settings_errors
from cmvoice.errors import ConfigurationError

OLD_KEY = "old-key-0123456789abcdef"
NEW_KEY = "new-key-fedcba9876543210"


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, broker_url="redis://127.0.0.1:1/0", **values)  # type: ignore[call-arg]


def test_every_listed_key_is_accepted_and_nothing_else() -> None:
    # Given two keys, as during a rotation
    registry = CollectorRegistry()
    check = ApiKeyCheck(configured_keys(settings(api_keys=f" {OLD_KEY} , {NEW_KEY},")), registry)

    # When keys are offered, then only the exact ones pass
    assert check.refusal(OLD_KEY) is None
    assert check.refusal(NEW_KEY) is None
    assert check.refusal(OLD_KEY[:-1]) == "wrong"
    assert check.refusal(OLD_KEY + "x") == "wrong"
    assert check.refusal(f"{OLD_KEY},{NEW_KEY}") == "wrong"
    assert check.refusal("") == "missing"
    assert check.refusal(None) == "missing"

    # And each refusal is counted by reason
    assert registry.get_sample_value("cmvoice_api_unauthorized_total", {"reason": "wrong"}) == 3
    assert registry.get_sample_value("cmvoice_api_unauthorized_total", {"reason": "missing"}) == 2


def test_no_key_configured_is_refused_naming_the_variable() -> None:
    # Given settings without CMVOICE_API_KEYS, or with only commas in it
    for values in ({}, {"api_keys": " , "}):
        # When the API's keys are read, then it refuses, naming the variable
        with pytest.raises(ConfigurationError, match="CMVOICE_API_KEYS: required"):
            configured_keys(settings(**values))


def test_a_short_key_is_refused_and_never_echoed() -> None:
    # Given a key of 8 characters beside a good one
    # When the settings are read
    with pytest.raises(ValidationError) as caught:
        settings(api_keys=f"{NEW_KEY},abcd1234")

    # Then the variable and the rule are named, no key shown
    [error] = settings_errors(caught.value)
    assert (error.field, error.value) == ("CMVOICE_API_KEYS", "<hidden>")
    assert "at least 16 characters" in error.rule
    assert "abcd1234" not in str(error)
    assert NEW_KEY not in str(error)
