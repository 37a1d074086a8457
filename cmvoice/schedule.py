"""DispatchSchedule: dispatches due later than a countdown should wait (retries, redials).

A Celery countdown is held unacknowledged by a worker until it is due, so it must stay far below
the broker's visibility timeout. Anything later waits here, in a Redis sorted set that the
reconciler drains; popping is atomic, so two reconcilers never both take the same entry.
"""

from __future__ import annotations

import redis

from cmvoice import lua
from cmvoice.replies import as_text

#: Longest wait handed to Celery as a countdown; longer ones go to the schedule.
MAX_COUNTDOWN_S = 15.0


class DispatchSchedule:
    """Instruction ids to dispatch at a later time, by Redis's clock."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key
        self._add = lua.load(client, "schedule_add")
        self._pop_due = lua.load(client, "schedule_pop_due")

    def add(self, instruction_id: str, delay_s: float) -> None:
        self._add(keys=[self.key], args=[instruction_id, int(delay_s * 1000)])

    def pop_due(self, limit: int = 500) -> list[str]:
        ids = self._pop_due(keys=[self.key], args=[limit])
        return [as_text(i) for i in ids]

    def __len__(self) -> int:
        return int(self.client.zcard(self.key))
