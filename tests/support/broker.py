"""The broker's queues as a test sees them, through kombu: the same on Redis and RabbitMQ."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from kombu import Queue
from kombu.exceptions import ChannelError

from cmvoice.worker import app


def queue_length(queue: str) -> int:
    """Messages ready in ``queue`` (a passive declare, as the reconciler counts); 0 if absent."""
    with app.connection_for_read() as connection:
        try:
            return int(connection.default_channel.queue_declare(queue, passive=True).message_count)
        except ChannelError:
            # Redis drops an empty list; RabbitMQ has no queue nobody declared.
            return 0


def take_messages(queue: str, limit: int = 100) -> list[dict[str, Any]]:
    """Take up to ``limit`` messages off ``queue``: each one's headers, properties and body."""
    taken: list[dict[str, Any]] = []
    with app.connection_for_read() as connection:
        bound = Queue(queue, no_declare=True).bind(connection.default_channel)
        while len(taken) < limit:
            message = bound.get(no_ack=True)
            if message is None:
                break
            taken.append(
                {
                    "headers": message.headers,
                    "properties": message.properties,
                    "body": json.loads(message.body),
                }
            )
    return taken


def message_text(message: dict[str, Any]) -> str:
    """All of a taken message as one string, to search for what must not be in it."""
    return json.dumps(message, default=str)


def purge(queues: Iterable[str]) -> None:
    """Empty ``queues`` (those that exist), so a test starts with nothing left from another."""
    with app.connection_for_write() as connection:
        channel: Any = connection.channel()
        try:
            for queue in queues:
                try:
                    channel.queue_purge(queue)
                except ChannelError:
                    # A missing queue closes the channel on RabbitMQ: go on with a new one.
                    channel = connection.channel()
        finally:
            channel.close()
