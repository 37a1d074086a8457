"""DispatchSchedule: dispatches due later than a countdown should wait (redials, long 429s).

A Celery countdown is held unacknowledged by a worker until it is due, so it must stay far below
the broker's visibility timeout. Anything later waits here, in a Redis sorted set that the
reconciler drains; popping is atomic, so two reconcilers never both take the same entry.
"""

from __future__ import annotations

import redis

from cmvoice.ledger import as_text

#: Longest wait handed to Celery as a countdown; longer ones go to the schedule.
MAX_COUNTDOWN_S = 15.0

# ARGV[1] max entries. Returns the ids due now, removed from the schedule.
_POP_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #ids > 0 then redis.call('ZREM', KEYS[1], unpack(ids)) end
return ids
"""
# ARGV[1] id, ARGV[2] delay in ms from Redis's now.
_ADD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
"""


class DispatchSchedule:
    """Instruction ids to dispatch at a later time, by Redis's clock."""

    def __init__(self, client: redis.Redis, key: str = "cmvoice:schedule") -> None:
        self.client = client
        self.key = key
        self._add = client.register_script(_ADD)
        self._pop_due = client.register_script(_POP_DUE)

    def add(self, instruction_id: str, delay_s: float) -> None:
        self._add(keys=[self.key], args=[instruction_id, int(delay_s * 1000)])

    def pop_due(self, limit: int = 500) -> list[str]:
        ids = self._pop_due(keys=[self.key], args=[limit])
        return [as_text(i) for i in ids]

    def __len__(self) -> int:
        return int(self.client.zcard(self.key))
