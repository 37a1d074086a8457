"""An outage names the URL that failed: the broker for kombu's errors, the ledger's Redis for
redis-py's, one Redis when both are the same (passwords never shown)."""

from __future__ import annotations

import kombu.exceptions
import redis

from cmvoice.outage import unavailable

LEDGER = "redis://:secret@ledger.example:6379/0"
BROKER = "amqp://user:secret@rabbit.example:5672//"


def test_a_broker_error_names_the_broker() -> None:
    # Given kombu's error for a broker it cannot reach, the ledger elsewhere
    exc = kombu.exceptions.OperationalError("[Errno 111] Connection refused")

    # When it is translated
    message = str(unavailable(exc, LEDGER, BROKER))

    # Then it names the broker and its variable, without the password
    assert message.startswith("cannot reach the broker at amqp://user:****@rabbit.example:5672//")
    assert "CMVOICE_BROKER_URL" in message
    assert "ledger.example" not in message
    assert "secret" not in message


def test_a_redis_error_names_the_ledgers_redis() -> None:
    # Given redis-py's error, the broker elsewhere
    exc = redis.ConnectionError("Error 111 connecting to ledger.example:6379.")

    # When it is translated
    message = str(unavailable(exc, LEDGER, BROKER))

    # Then it names the ledger's Redis and its variable
    assert message.startswith("cannot reach Redis (the ledger) at redis://:****@ledger.example")
    assert "CMVOICE_REDIS_URL" in message
    assert "rabbit.example" not in message
    assert "secret" not in message


def test_one_redis_for_both_is_named_once() -> None:
    # Given the same Redis as the ledger and the broker
    exc = redis.ConnectionError("Error 111 connecting to ledger.example:6379.")

    # When it is translated
    message = str(unavailable(exc, LEDGER, LEDGER))

    # Then it is named as Redis, with the way to start one
    assert message.startswith("cannot reach Redis at redis://:****@ledger.example:6379/0")
    assert "cmvoice dev" in message
