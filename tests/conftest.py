"""Shared fixtures: a private redis-server per test session, cleaned before every test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cmvoice.embedded_redis import EmbeddedRedis

# Real numbers of the right shape, so phonenumbers accepts them; the simulator's outcome rule
# reads the last two digits (..09 not answered, ..11 failed, ..12 rejected, else finished).
CALLER = "+31761234567"
CALLEE = "+31612345678"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A redis-server of our own on a free port: never the machine's shared one on 6379."""
    server = EmbeddedRedis(data_dir=tmp_path_factory.mktemp("redis"), persistent=False)
    with server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The private Redis's URL, emptied before the test (it is ours alone, so flushing is safe)."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def examples_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "examples"
