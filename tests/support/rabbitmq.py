"""A RabbitMQ virtual host of the test session's own, made and removed with ``rabbitmqctl``.

The RabbitMQ pass (``CMVOICE_TEST_BROKER=rabbitmq``) runs against the machine's RabbitMQ on
127.0.0.1:5672, but only inside a vhost it creates and deletes: never another vhost, user or
the node's configuration.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass

#: Where the machine's (and CI's) RabbitMQ listens; the default guest user may log in there.
AMQP_HOST = "127.0.0.1"
AMQP_PORT = 5672
AMQP_USER = "guest"
#: rabbitmqctl starts an Erlang VM for each command: about a second each.
RABBITMQCTL_TIMEOUT_S = 60.0
#: Every vhost the tests create starts with this, so a leftover one is recognisable.
VHOST_PREFIX = "cmvoice-test-"


class RabbitMQUnavailable(Exception):
    """RabbitMQ cannot be used here; the message says why and what to do."""


def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl -q ARGS``; its output, or RabbitMQUnavailable saying what failed."""
    command = shutil.which("rabbitmqctl")
    if command is None:
        raise RabbitMQUnavailable("rabbitmqctl is not installed (apt-get install rabbitmq-server)")
    try:
        done = subprocess.run(
            [command, "-q", *args],
            capture_output=True,
            text=True,
            timeout=RABBITMQCTL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RabbitMQUnavailable(
            f"rabbitmqctl {args[0]}: no answer within {RABBITMQCTL_TIMEOUT_S:g} s"
        ) from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RabbitMQUnavailable(
            f"rabbitmqctl {args[0]} exited with {done.returncode}: {detail[0]} "
            "(it needs root, or the RabbitMQ user's Erlang cookie)"
        )
    return done.stdout


def listening(host: str = AMQP_HOST, port: int = AMQP_PORT) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@dataclass
class RabbitVhost:
    """One vhost on the local RabbitMQ, the guest user allowed everything in it."""

    name: str
    deleted: bool = False

    @classmethod
    def create(cls) -> RabbitVhost:
        """Create a vhost with a name no other run uses; RabbitMQUnavailable if it cannot."""
        if not listening():
            raise RabbitMQUnavailable(
                f"nothing listens on {AMQP_HOST}:{AMQP_PORT} "
                "(start it with: rabbitmq-server -detached && rabbitmqctl await_startup)"
            )
        vhost = cls(f"{VHOST_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
        rabbitmqctl("add_vhost", vhost.name)
        try:
            rabbitmqctl("set_permissions", "-p", vhost.name, AMQP_USER, ".*", ".*", ".*")
        except RabbitMQUnavailable:
            vhost.delete()
            raise
        return vhost

    @property
    def url(self) -> str:
        return f"amqp://{AMQP_USER}:{AMQP_USER}@{AMQP_HOST}:{AMQP_PORT}/{self.name}"

    def delete(self) -> None:
        """Delete the vhost, its queues and messages (once; later calls do nothing)."""
        if self.deleted:
            return
        self.deleted = True
        rabbitmqctl("delete_vhost", self.name)
