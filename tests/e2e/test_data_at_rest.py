"""What Redis writes to disk: with CMVOICE_ENCRYPTION_KEY, its append-only file holds no OTP
code, number or prompt; without one it does (which is why the README says to set one)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography.fernet import Fernet

from cmvoice.calls import Claim
from cmvoice.crypto import FieldCipher
from cmvoice.keyspace import Keys
from cmvoice.ledger import CallLedger

CODE = "739150"
CALLEE = "+31612345678"
PROMPT = "Your delivery code follows."


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[tuple[redis.Redis, Path]]:
    """A redis-server of its own with the append-only file on, as the README recommends."""
    from cmvoice.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis(data_dir=tmp_path / "redis", persistent=True)
    with server:
        client = redis.Redis.from_url(server.url)
        yield client, server.data_dir
        client.close()


def written_to_disk(data_dir: Path, marker: bytes) -> bytes:
    """Every byte of the append-only file(s), once ``marker`` (the last write) is in them."""
    deadline = time.monotonic() + 10
    while True:
        files = [path for path in data_dir.rglob("*.aof") if path.is_file()]
        content = b"".join(path.read_bytes() for path in files)
        if marker in content or time.monotonic() > deadline:
            return content
        time.sleep(0.05)


def one_otp_call_through_the_ledger(client: redis.Redis, cipher: FieldCipher) -> None:
    """An OTP call as a worker handles it: created, claimed, placed (the code deleted), then
    its callback recorded."""
    ledger = CallLedger(client, keys=Keys("disk"), cipher=cipher)
    payload = {"callee": CALLEE, "caller": "+31761234567", "code": CODE, "prompt": PROMPT}
    ledger.create("otp-1", "otp", payload)
    claim = ledger.claim("otp-1", 30, send_now=True)
    assert isinstance(claim, Claim)
    assert claim.code == CODE, "the dispatcher gets the code back in clear"
    ledger.placed(claim, "6d0f176e-00ac-4de2-a04d-b3f7c895adb0")
    ledger.finish("otp-1", "6d0f176e-00ac-4de2-a04d-b3f7c895adb0", {"result_code": "10"})
    client.set("disk:end-marker", "written")


def test_with_a_key_the_append_only_file_holds_no_code_number_or_prompt(
    aof_redis: tuple[redis.Redis, Path],
) -> None:
    # Given a ledger with an encryption key, on a Redis that keeps an append-only file
    client, data_dir = aof_redis
    cipher = FieldCipher([Fernet.generate_key().decode()])

    # When an OTP call goes all the way through it
    one_otp_call_through_the_ledger(client, cipher)

    # Then the file on disk holds none of the code, the number or the prompt
    disk = written_to_disk(data_dir, b"end-marker")
    assert b"end-marker" in disk, "the append-only file was written"
    assert b"otp-1" in disk, "the record itself was written"
    for secret in (CODE, CALLEE, CALLEE[1:], PROMPT):
        assert secret.encode() not in disk, secret


def test_without_a_key_the_append_only_file_keeps_them_in_plain_text(
    aof_redis: tuple[redis.Redis, Path],
) -> None:
    # Given the same ledger without a key
    client, data_dir = aof_redis

    # When the same call goes through it
    one_otp_call_through_the_ledger(client, FieldCipher(None))

    # Then the disk keeps them, though the code left Redis's memory when CM had it
    disk = written_to_disk(data_dir, b"end-marker")
    assert CODE.encode() in disk
    assert CALLEE.encode() in disk
    assert client.hget("disk:call:otp-1", "code") is None
