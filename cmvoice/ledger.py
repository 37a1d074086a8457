"""CallLedger: the per-call record in Redis and its state machine, every transition atomic (Lua).

States (DESIGN.md, Call lifecycle)::

    QUEUED ──claim──> DISPATCHING ──sending──> (POST) ──> PLACED ──callback──> FINISHED
       ^                   │  │                   │  └──> FAILED     (permanent error)
       └──release (retry)──┘  └─lease expired,    └─────> UNKNOWN    (may have been placed)
    QUEUED ──cancel──> CANCELLED      not sent: requeue       lease expired after sending

A transition only happens from the states it names, and a claimed record only moves on with the
claim token that claimed it, so a duplicated or redelivered dispatch task can never POST twice.
Times are Redis server time (milliseconds), so the clocks of workers do not matter.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

#: Prefix of every key cmvoice writes.
KEY_PREFIX = "cmvoice"


class CallState(StrEnum):
    """Where a call is in its life."""

    QUEUED = "QUEUED"
    DISPATCHING = "DISPATCHING"
    PLACED = "PLACED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (CallState.FINISHED, CallState.FAILED, CallState.CANCELLED)


#: States kept in a sorted-set index, so the reconciler finds them without scanning.
INDEXED_STATES = (CallState.QUEUED, CallState.DISPATCHING, CallState.PLACED, CallState.UNKNOWN)

# Shared Lua prelude: server time in ms, and moving a record between state indexes.
_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function index_key(state)
  return ARGV[1] .. ':state:' .. state
end
local indexed = {QUEUED = true, DISPATCHING = true, PLACED = true, UNKNOWN = true}
local function move(key, id, old, new, score, retention_s)
  if indexed[old] then redis.call('ZREM', index_key(old), id) end
  if indexed[new] then redis.call('ZADD', index_key(new), score, id) end
  local campaign = redis.call('HGET', key, 'campaign_id')
  if campaign and old ~= new then
    -- Campaign counters move in the same atomic step as the record: they cannot drift.
    local counts = ARGV[1] .. ':campaign:' .. campaign .. ':counts'
    if old ~= '' then redis.call('HINCRBY', counts, old, -1) end
    redis.call('HINCRBY', counts, new, 1)
    if new == 'FINISHED' then
      local code = redis.call('HGET', key, 'result_code')
      if code then redis.call('HINCRBY', counts, 'code:' .. code, 1) end
    end
  end
  redis.call('HSET', key, 'state', new, 'updated_at', now_ms())
  if new == 'PLACED' or new == 'FINISHED' or new == 'FAILED' or new == 'CANCELLED' then
    -- CM has the code, or the call is over: the secret goes.
    redis.call('HDEL', key, 'code')
  end
  redis.call('EXPIRE', key, retention_s)
end
"""

# KEYS[1] record; ARGV[1] prefix, ARGV[2] id, ARGV[3] retention_s, ARGV[4] due_in_ms,
# ARGV[5..] field/value pairs. Returns 1 if created, 0 if the id already exists.
_CREATE = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local now = now_ms()
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'created_at', now, 'attempts', 0, 'due_at', now + tonumber(ARGV[4]))
move(KEYS[1], ARGV[2], '', 'QUEUED', now + tonumber(ARGV[4]), ARGV[3])
return 1
"""
)

# ARGV[1] prefix, ARGV[2] id, ARGV[3] retention_s, ARGV[4] claim token, ARGV[5] lease_ms.
# Returns {'claimed'} or {current state}; 'missing' when there is no record.
_CLAIM = (
    _PRELUDE
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
local now = now_ms()
local lease_until = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
local sent = redis.call('HGET', KEYS[1], 'sent')
if state == 'QUEUED' or (state == 'DISPATCHING' and lease_until < now and sent ~= '1') then
  local lease = now + tonumber(ARGV[5])
  redis.call('HSET', KEYS[1], 'claim', ARGV[4], 'lease_until', lease, 'sent', '0')
  redis.call('HINCRBY', KEYS[1], 'claims', 1)
  move(KEYS[1], ARGV[2], state, 'DISPATCHING', lease, ARGV[3])
  -- The claimed record comes back in the same round trip.
  return {'claimed', redis.call('HGETALL', KEYS[1])}
end
return {state}
"""
)

# The POST is about to go out: from here on a lost worker means UNKNOWN, never a requeue.
# ARGV[4] claim token, ARGV[5] lease_ms (covers the request's timeouts).
_SENDING = (
    _PRELUDE
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'DISPATCHING'
   or redis.call('HGET', KEYS[1], 'claim') ~= ARGV[4] then return 'lost' end
local campaign = redis.call('HGET', KEYS[1], 'campaign_id')
if campaign then
  -- Checked here, atomically with the decision to send: once a campaign is paused or
  -- cancelled, not one more of its calls goes out.
  local status = redis.call('HGET', ARGV[1] .. ':campaign:' .. campaign, 'status')
  if status == 'paused' then return 'paused' end
  if status == 'cancelled' then
    redis.call('HSET', KEYS[1], 'last_error', 'campaign cancelled')
    move(KEYS[1], ARGV[2], 'DISPATCHING', 'CANCELLED', 0, ARGV[3])
    return 'cancelled'
  end
end
local lease = now_ms() + tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'sent', '1', 'lease_until', lease, 'sent_at', now_ms())
redis.call('HINCRBY', KEYS[1], 'posts', 1)
move(KEYS[1], ARGV[2], 'DISPATCHING', 'DISPATCHING', lease, ARGV[3])
return 'sending'
"""
)

# Move a claimed record on. ARGV[4] claim token ('' = no claim needed), ARGV[5] new state,
# ARGV[6] comma-separated states it may come from, ARGV[7] index score offset in ms,
# ARGV[8] attempts increment, ARGV[9] number of field/value pairs, then the pairs, then one
# message per KEYS[2..]: pushed onto those lists only if the record moved (an outbox).
# Returns {'ok', state before} or {current state}.
_TRANSITION = (
    _PRELUDE
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
local allowed = false
for s in string.gmatch(ARGV[6], '[^,]+') do if s == state then allowed = true end end
if not allowed then return {state} end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'claim') ~= ARGV[4] then return {state} end
local now = now_ms()
local pairs_end = 9 + 2 * tonumber(ARGV[9])
for i = 10, pairs_end, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if tonumber(ARGV[8]) > 0 then redis.call('HINCRBY', KEYS[1], 'attempts', ARGV[8]) end
local score = now + tonumber(ARGV[7])
if ARGV[5] == 'QUEUED' then redis.call('HSET', KEYS[1], 'due_at', score, 'sent', '0') end
move(KEYS[1], ARGV[2], state, ARGV[5], score, ARGV[3])
for i = 2, #KEYS do redis.call('LPUSH', KEYS[i], ARGV[pairs_end + i - 1]) end
return {'ok', state}
"""
)


class SendDecision(StrEnum):
    """Whether a claimed call may be POSTed now."""

    SENDING = "sending"
    LOST = "lost"
    PAUSED = "paused"
    CANCELLED = "cancelled"


class FinishOutcome(StrEnum):
    """What recording a callback did."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    MISSING = "missing"


@dataclass(frozen=True)
class CallRecord:
    """A snapshot of one call's ledger record. ``payload`` never holds the OTP code."""

    instruction_id: str
    kind: str
    state: CallState
    payload: dict[str, Any]
    fields: dict[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)

    def get_int(self, name: str, default: int = 0) -> int:
        value = self.fields.get(name)
        return int(value) if value not in (None, "") else default

    @property
    def attempts(self) -> int:
        return self.get_int("attempts")

    @property
    def campaign_id(self) -> str | None:
        return self.fields.get("campaign_id") or None

    @property
    def call_id(self) -> str | None:
        return self.fields.get("call_id") or None

    @property
    def last_error(self) -> str:
        return self.get("last_error")


@dataclass(frozen=True)
class Claim:
    """The right to dispatch one record, proven by ``token`` on every later transition."""

    record: CallRecord
    token: str
    code: str | None  # the OTP code, handed only to the dispatcher that POSTs it


class CallLedger:
    """Per-call records in Redis: create, claim, and move them through the state machine.

    Args:
        client: a redis-py client (``decode_responses`` is not required).
        retention_s: how long a record lives after its last change.
        prefix: key prefix, to share one Redis between several deployments.
    """

    def __init__(
        self, client: redis.Redis, *, retention_s: float = 7 * 86400, prefix: str = KEY_PREFIX
    ) -> None:
        self.redis = client
        self.retention_s = int(retention_s)
        self.prefix = prefix
        self._create = client.register_script(_CREATE)
        self._claim = client.register_script(_CLAIM)
        self._sending = client.register_script(_SENDING)
        self._transition = client.register_script(_TRANSITION)

    # keys
    def key(self, instruction_id: str) -> str:
        return f"{self.prefix}:call:{instruction_id}"

    def campaign_key(self, campaign_id: str) -> str:
        """The campaign's hash (``status``, ``name``...); its counters are ``...:counts``."""
        return f"{self.prefix}:campaign:{campaign_id}"

    def index_key(self, state: CallState) -> str:
        return f"{self.prefix}:state:{state.value}"

    def _base_args(self, instruction_id: str) -> list[Any]:
        return [self.prefix, instruction_id, self.retention_s]

    # creation
    def create(
        self,
        instruction_id: str,
        kind: str,
        payload: dict[str, Any],
        *,
        campaign_id: str | None = None,
        extra: dict[str, str] | None = None,
        due_in_s: float = 0.0,
        pipeline: redis.client.Pipeline | None = None,
    ) -> bool:
        """Write a QUEUED record; False (nothing written) if the id already exists.

        The OTP code is kept apart from the payload, so it can be deleted once CM has it.
        """
        body = dict(payload)
        code = body.pop("code", None)
        fields: dict[str, str] = {"kind": kind, "payload": json.dumps(body, separators=(",", ":"))}
        if code is not None:
            fields["code"] = str(code)
        if campaign_id:
            fields["campaign_id"] = campaign_id
        fields.update(extra or {})
        args = [*self._base_args(instruction_id), int(due_in_s * 1000)]
        for name, value in fields.items():
            args += [name, value]
        result = self._create(keys=[self.key(instruction_id)], args=args, client=pipeline)
        return pipeline is not None or bool(result)

    # reads
    def get(self, instruction_id: str) -> CallRecord | None:
        raw = self.redis.hgetall(self.key(instruction_id))
        return _record(instruction_id, raw) if raw else None

    def ids_in(
        self, state: CallState, *, max_score_ms: int | None = None, limit: int = 500
    ) -> list[str]:
        """Ids in an indexed state, oldest score first (optionally only up to a score)."""
        high: int | str = "+inf" if max_score_ms is None else max_score_ms
        ids = self.redis.zrangebyscore(self.index_key(state), "-inf", high, start=0, num=limit)
        return [as_text(item) for item in ids]

    def count_in(self, state: CallState) -> int:
        return int(self.redis.zcard(self.index_key(state)))

    def server_time_ms(self) -> int:
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # transitions
    def claim(self, instruction_id: str, lease_s: float) -> Claim | CallState | None:
        """Claim a QUEUED record (or one whose lease expired before it was sent).

        Returns the Claim, the record's current state when someone else has it, or None when
        there is no such record.
        """
        token = secrets.token_hex(8)
        result = self._claim(
            keys=[self.key(instruction_id)],
            args=[*self._base_args(instruction_id), token, int(lease_s * 1000)],
        )
        outcome = as_text(result[0])
        if outcome == "missing":
            return None
        if outcome != "claimed":
            return CallState(outcome)
        flat = result[1]
        raw = {as_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
        record = _record(instruction_id, raw)
        code = raw.get("code")
        return Claim(record=record, token=token, code=as_text(code) if code is not None else None)

    def mark_sending(self, claim: Claim, lease_s: float) -> SendDecision:
        """Record that the POST is going out now, if it still may.

        Returns SENDING (go), LOST (another worker has the claim), PAUSED (the campaign is
        paused: release the claim) or CANCELLED (the campaign was cancelled: the record is
        CANCELLED now).
        """
        iid = claim.record.instruction_id
        result = self._sending(
            keys=[self.key(iid)],
            args=[*self._base_args(iid), claim.token, int(lease_s * 1000)],
        )
        return SendDecision(as_text(result))

    def transition(
        self,
        instruction_id: str,
        to: CallState,
        *,
        allowed: tuple[CallState, ...],
        token: str = "",
        score_in_s: float = 0.0,
        count_attempt: bool = False,
        fields: dict[str, str] | None = None,
        outbox: Sequence[tuple[str, bytes]] = (),
    ) -> tuple[bool, CallState | None]:
        """Move a record to ``to`` if it is in one of ``allowed`` (and holds ``token``, if given).

        ``outbox`` holds (list key, message) pairs pushed in the same atomic step, only if the
        record moved: messages that must go out once, and only with the transition.
        Returns (moved, state before); state before is None when there is no record.
        """
        fields = fields or {}
        args: list[Any] = [
            *self._base_args(instruction_id),
            token,
            to.value,
            ",".join(state.value for state in allowed),
            int(score_in_s * 1000),
            1 if count_attempt else 0,
            len(fields),
        ]
        for name, value in fields.items():
            args += [name, value]
        args += [message for _, message in outbox]
        keys = [self.key(instruction_id), *(key for key, _ in outbox)]
        result = self._transition(keys=keys, args=args)
        outcome = as_text(result[0])
        if outcome == "missing":
            return False, None
        if outcome == "ok":
            return True, CallState(as_text(result[1]))
        return False, CallState(outcome)

    def placed(self, claim: Claim, call_id: str) -> bool:
        """CM answered call-queued: PLACED, and the OTP code is deleted.

        If the callback already arrived (FINISHED), only the call id is filled in.
        """
        iid = claim.record.instruction_id
        moved, before = self.transition(
            iid,
            CallState.PLACED,
            allowed=(CallState.DISPATCHING,),
            token=claim.token,
            fields={"call_id": call_id},
        )
        if not moved:
            # The callback beat us to it (FINISHED), or the claim was lost: CM has the code
            # now either way, so it must not stay in Redis.
            self.redis.hdel(self.key(iid), "code")
            if before is not None and before.is_terminal:
                self.redis.hsetnx(self.key(iid), "call_id", call_id)
        return moved

    def release(
        self, claim: Claim, *, due_in_s: float, error: str = "", count_attempt: bool = False
    ) -> bool:
        """Give a claimed record back to QUEUED, due again in ``due_in_s`` (a retry or wait)."""
        fields = {"last_error": error} if error else {}
        moved, _ = self.transition(
            claim.record.instruction_id,
            CallState.QUEUED,
            allowed=(CallState.DISPATCHING,),
            token=claim.token,
            score_in_s=due_in_s,
            count_attempt=count_attempt,
            fields=fields,
        )
        return moved

    def fail(self, instruction_id: str, reason: str, *, claim: Claim | None = None) -> bool:
        """FAILED, with the reason kept; from any non-terminal state (with the claim, if given)."""
        moved, _ = self.transition(
            instruction_id,
            CallState.FAILED,
            allowed=(
                CallState.QUEUED,
                CallState.DISPATCHING,
                CallState.PLACED,
                CallState.UNKNOWN,
            ),
            token=claim.token if claim else "",
            fields={"last_error": reason},
        )
        return moved

    def unknown(self, claim: Claim, reason: str) -> bool:
        """UNKNOWN: the POST may have placed the call; wait for a callback before deciding."""
        moved, _ = self.transition(
            claim.record.instruction_id,
            CallState.UNKNOWN,
            allowed=(CallState.DISPATCHING,),
            token=claim.token,
            fields={"last_error": reason},
        )
        return moved

    def finish(
        self,
        instruction_id: str,
        call_id: str,
        fields: dict[str, str],
        outbox: Sequence[tuple[str, bytes]] = (),
    ) -> FinishOutcome:
        """Record CM's callback: FINISHED, from any state a placed call can be in.

        UNKNOWN and FAILED are included on purpose: a callback proves the call was placed, and
        a FINISHED record can never be dispatched again. A second callback for the same call
        changes nothing and says so.
        """
        record = self.get(instruction_id)
        if record is None:
            return FinishOutcome.MISSING
        if record.state is CallState.FINISHED and record.get("call_id") in ("", call_id):
            return FinishOutcome.DUPLICATE
        moved, _ = self.transition(
            instruction_id,
            CallState.FINISHED,
            allowed=(
                CallState.DISPATCHING,
                CallState.PLACED,
                CallState.UNKNOWN,
                CallState.FAILED,
            ),
            fields={"call_id": call_id, **fields},
            outbox=outbox,
        )
        return FinishOutcome.RECORDED if moved else FinishOutcome.DUPLICATE

    def cancel(self, instruction_id: str, reason: str = "cancelled") -> bool:
        """CANCELLED, only from QUEUED: a call already being dispatched or placed goes on."""
        moved, _ = self.transition(
            instruction_id,
            CallState.CANCELLED,
            allowed=(CallState.QUEUED,),
            fields={"last_error": reason},
        )
        return moved

    def cancel_many(self, instruction_ids: Sequence[str], reason: str = "cancelled") -> int:
        """``cancel()`` for many ids in one round trip; returns how many became CANCELLED."""
        pipe = self.redis.pipeline(transaction=False)
        for iid in instruction_ids:
            args = [*self._base_args(iid), "", CallState.CANCELLED.value, CallState.QUEUED.value]
            args += [0, 0, 1, "last_error", reason]
            self._transition(keys=[self.key(iid)], args=args, client=pipe)
        return sum(1 for result in pipe.execute() if as_text(result[0]) == "ok")


def as_text(value: Any) -> str:
    """A Redis reply (bytes, or already str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _record(instruction_id: str, raw: dict[Any, Any]) -> CallRecord:
    fields = {as_text(k): as_text(v) for k, v in raw.items() if as_text(k) != "code"}
    payload = json.loads(fields.get("payload", "{}"))
    return CallRecord(
        instruction_id=instruction_id,
        kind=fields.get("kind", ""),
        state=CallState(fields.get("state", "QUEUED")),
        payload=payload,
        fields=fields,
    )
