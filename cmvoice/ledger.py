"""CallLedger: the per-call record in Redis and its state machine, every transition atomic (Lua).

The states, the transitions and where each invariant is enforced are drawn in
docs/architecture.md ("Ledger"). In short: a transition only happens from the states it names,
a claimed record only moves on with the claim token that claimed it, and a record marked sent
is never claimed again, so a duplicated or redelivered dispatch can never POST twice. Times are
Redis server time, so the clocks of workers do not matter.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any

import redis

from cmvoice import lua
from cmvoice.calls import (
    ACTIVE_STATES,
    CallRecord,
    CallState,
    Claim,
    ClaimOutcome,
    Delivery,
    DispatchLimits,
    Ended,
    FinishOutcome,
    Parked,
    SendDecision,
)
from cmvoice.crypto import FieldCipher
from cmvoice.keyspace import Keys
from cmvoice.replies import as_text, flat_to_dict

#: Fields a redial copies from the call it follows.
REDIAL_COPIED_FIELDS = (
    "kind",
    "payload",
    "campaign_id",
    "campaign_line",
    "zone_group",
    "expires_at",
    "number_hash",
    "respect_window",
)
#: Fields never shown by a record view: secrets, and claim bookkeeping.
_HIDDEN_FIELDS = ("code",)


class CallLedger:
    """Per-call records in Redis: create, claim, and move them through the state machine.

    Args:
        client: a redis-py client (``decode_responses`` is not required).
        keys: the deployment's key namespace.
        retention_s: how long a record lives after its last change.
        cipher: encrypts the OTP code and the payload at rest (no-op without a key).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        keys: Keys | None = None,
        retention_s: float = 7 * 86400,
        cipher: FieldCipher | None = None,
    ) -> None:
        self.redis = client
        self.keys = keys or Keys()
        self.retention_s = int(retention_s)
        self.cipher = cipher or FieldCipher(None)
        self._create = lua.load(client, "create")
        self._begin = lua.load(client, "begin")
        self._sending = lua.load(client, "mark_sending")
        self._placed = lua.load(client, "placed")
        self._transition = lua.load(client, "transition")
        self._finish = lua.load(client, "finish")

    # keys
    def key(self, instruction_id: str) -> str:
        return self.keys.call(instruction_id)

    def campaign_key(self, campaign_id: str) -> str:
        """The campaign's hash (``status``, ``name``...); its counters are ``...:counts``."""
        return self.keys.campaign(campaign_id)

    def index_key(self, state: CallState) -> str:
        return self.keys.state_index(state.value)

    def _base_args(self, instruction_id: str) -> list[Any]:
        return [self.keys.prefix, instruction_id, self.retention_s]

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
        backlog: tuple[str, float] | None = None,
        push: tuple[str, bytes] | None = None,
        pipeline: redis.client.Pipeline | None = None,
    ) -> bool:
        """Write a QUEUED record; False (nothing written) if the id already exists.

        ``backlog`` is (key, score) of the campaign backlog the call waits in; without it the
        call is expected in the broker: ``push`` (queue list, message) pushes its dispatch in
        the same step, else the caller publishes it. The OTP code is kept apart from the
        payload, so it can be deleted once CM has it.
        """
        body = dict(payload)
        code = body.pop("code", None)
        fields: dict[str, str] = {
            "kind": kind,
            "payload": self.cipher.seal(json.dumps(body, separators=(",", ":"))),
        }
        if code is not None:
            fields["code"] = self.cipher.seal(str(code))
        if campaign_id:
            fields["campaign_id"] = campaign_id
        fields.update(extra or {})
        keys = [self.key(instruction_id)]
        args: list[Any] = [*self._base_args(instruction_id), int(due_in_s * 1000), "", ""]
        if backlog is not None:
            keys.append(backlog[0])
            args[4] = repr(backlog[1])
        elif push is not None:
            keys.append(push[0])
            args[5] = push[1]
        for name, value in fields.items():
            args += [name, value]
        result = self._create(keys=keys, args=args, client=pipeline)
        return pipeline is not None or bool(result)

    # reads
    def exists(self, instruction_id: str) -> bool:
        return bool(self.redis.exists(self.key(instruction_id)))

    def get(self, instruction_id: str) -> CallRecord | None:
        raw = self.redis.hgetall(self.key(instruction_id))
        return self.record_from(instruction_id, raw) if raw else None

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

    # dispatch
    def claim(
        self,
        instruction_id: str,
        lease_s: float,
        *,
        limits: DispatchLimits | None = None,
        send_now: bool = False,
    ) -> ClaimOutcome:
        """Claim a QUEUED record (or one whose lease expired before it was sent), in one step
        with everything checked before a POST: deadline, refused token, campaign status, a
        concurrency slot (a campaign call's within the campaigns' share of them) and a rate turn
        (``limits``; none checked without them).

        With ``send_now`` and no rate wait, the record is marked sent at once; otherwise
        ``mark_sending`` does it just before the POST. Returns the Claim; Parked when the call
        waits in Redis for a slot, a rate turn or its campaign; Ended when the claim ended it;
        the record's state when someone else has it; None when there is no such record.
        """
        token = secrets.token_hex(8)
        keys = [self.key(instruction_id)]
        if limits is None:
            keys += [self.keys.account("none"), self.keys.slots("none")]
            numbers, checks = [0] * 5, [0] * 4
        else:
            keys += [limits.account_key, limits.slots_key]
            numbers, checks = limits.begin_args()
        args = [*self._base_args(instruction_id), token, int(lease_s * 1000), *numbers]
        result = self._begin(keys=keys, args=[*args, 1 if send_now else 0, *checks])
        outcome = as_text(result[0])
        if outcome == "missing":
            return None
        if outcome == "busy":
            state = as_text(result[1])
            return CallState(state) if state in CallState.__members__ else Parked(state)
        if outcome == "wait":
            return Parked(as_text(result[1]))
        if outcome == "ended":
            return Ended(CallState(as_text(result[1])), as_text(result[2]), as_text(result[3]))
        wait_us = int(result[1])
        raw = flat_to_dict(result[2])
        code = raw.get("code")
        return Claim(
            record=self.record_from(instruction_id, raw),
            token=token,
            code=self.cipher.open(as_text(code)) if code is not None else None,
            wait_s=wait_us / 1_000_000,
            sending=send_now and wait_us <= 0,
        )

    def mark_sending(
        self, claim: Claim, lease_s: float, limits: DispatchLimits | None = None
    ) -> SendDecision | float:
        """Record that the POST is going out now, if it still may (after the rate wait).

        Returns SENDING (go), LOST (another worker has the claim), PAUSED (the campaign is
        paused: the call is back in its backlog) or CANCELLED (the record is CANCELLED now);
        or the seconds to wait at the send gate before asking again (``limits`` given).
        """
        iid = claim.record.instruction_id
        keys = [self.key(iid), self.keys.slots("none"), self.keys.account("none")]
        interval_us = 0
        if limits is not None:
            keys[1:] = [limits.slots_key, limits.account_key]
            interval_us = round(limits.interval_s * 1_000_000)
        result = self._sending(
            keys=keys,
            args=[*self._base_args(iid), claim.token, int(lease_s * 1000), interval_us],
        )
        if isinstance(result, int):
            return result / 1_000_000
        return SendDecision(as_text(result))

    def placed(self, claim: Claim, call_id: str) -> bool:
        """CM answered call-queued: PLACED, and the OTP code is deleted.

        If the callback already arrived (FINISHED), only the call id is filled in.
        """
        iid = claim.record.instruction_id
        result = self._placed(
            keys=[self.key(iid)], args=[*self._base_args(iid), claim.token, call_id]
        )
        return as_text(result) == "placed"

    # other transitions
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
        slots_key: str = "",
        park: str = "",
        outbox: Sequence[tuple[str, bytes]] = (),
    ) -> tuple[bool, CallState | None]:
        """Move a record to ``to`` if it is in one of ``allowed`` (and holds ``token``, if given).

        ``slots_key`` gives the record's concurrency slot back; ``park`` (for QUEUED) makes the
        call wait in its campaign's backlog or the waiting room, due in ``score_in_s``, instead
        of expecting a dispatch message. ``outbox`` holds (list key, message) pairs pushed in
        the same atomic step, only if the record moved.
        Returns (moved, state before); state before is None when there is no record.
        """
        pairs = [item for name, value in (fields or {}).items() for item in (name, value)]
        args: list[Any] = [
            *self._base_args(instruction_id),
            token,
            to.value,
            ",".join(state.value for state in allowed),
            int(score_in_s * 1000),
            1 if count_attempt else 0,
            1 if slots_key else 0,
            park,
            len(pairs) // 2,
            *pairs,
            *(message for _, message in outbox),
        ]
        keys = [self.key(instruction_id), slots_key or self.keys.slots("none")]
        result = self._transition(keys=[*keys, *(key for key, _ in outbox)], args=args)
        outcome = as_text(result[0])
        if outcome == "missing":
            return False, None
        if outcome == "ok":
            return True, CallState(as_text(result[1]))
        return False, CallState(outcome)

    def release(
        self,
        claim: Claim,
        *,
        due_in_s: float,
        error: str = "",
        count_attempt: bool = False,
        slots_key: str = "",
        park: str = "",
        fields: dict[str, str] | None = None,
    ) -> bool:
        """Give a claimed record back to QUEUED, due again in ``due_in_s`` (a retry)."""
        moved, _ = self.transition(
            claim.record.instruction_id,
            CallState.QUEUED,
            allowed=(CallState.DISPATCHING,),
            token=claim.token,
            score_in_s=due_in_s,
            count_attempt=count_attempt,
            fields={**({"last_error": error} if error else {}), **(fields or {})},
            slots_key=slots_key,
            park=park,
        )
        return moved

    def fail(
        self,
        instruction_id: str,
        reason: str,
        *,
        claim: Claim | None = None,
        slots_key: str = "",
    ) -> bool:
        """FAILED, with the reason kept; from any non-terminal state (with the claim, if given)."""
        moved, _ = self.transition(
            instruction_id,
            CallState.FAILED,
            allowed=ACTIVE_STATES,
            token=claim.token if claim else "",
            fields={"last_error": reason},
            slots_key=slots_key,
        )
        return moved

    def unknown(self, claim: Claim, reason: str) -> bool:
        """UNKNOWN: the POST may have placed the call; wait for a callback before deciding.

        The concurrency slot stays taken: the call may be ringing.
        """
        moved, _ = self.transition(
            claim.record.instruction_id,
            CallState.UNKNOWN,
            allowed=(CallState.DISPATCHING,),
            token=claim.token,
            fields={"last_error": reason, "unknown_since": str(self.server_time_ms())},
        )
        return moved

    def finish(
        self,
        instruction_id: str,
        call_id: str,
        fields: dict[str, str],
        *,
        slots_key: str = "",
        redial: tuple[str, float] | None = None,
        schedule_redial: bool = True,
        deliveries: Sequence[Delivery] = (),
        outbox_timeout_s: float = 0.0,
    ) -> FinishOutcome:
        """Record CM's callback: FINISHED, the slot back, then the redial and deliveries.

        From DISPATCHING, PLACED and UNKNOWN, and from FAILED when the call was placed or its
        outcome unknown (a callback proves the call was placed). A callback whose call-id is
        not the one CM gave changes nothing (MISMATCH). ``redial`` (id, delay) is created only
        if this moved the record, in the same atomic step (a campaign's in its backlog, an
        interactive one in the Redis schedule unless ``schedule_redial`` is False and the
        caller publishes a countdown); so are the ``deliveries``.
        """
        pairs = [item for name, value in fields.items() for item in (name, value)]
        redial_id, delay_s = redial or ("", 0.0)
        args: list[Any] = [
            *self._base_args(instruction_id),
            call_id,
            redial_id,
            int(delay_s * 1000),
            1 if schedule_redial else 0,
            ",".join(REDIAL_COPIED_FIELDS),
            int(outbox_timeout_s * 1000),
            len(pairs) // 2,
            *pairs,
        ]
        keys = [
            self.key(instruction_id),
            slots_key or self.keys.slots("none"),
            self.key(redial_id) if redial_id else self.key(instruction_id),
            self.keys.outbox(),
            self.keys.outbox_messages(),
        ]
        for delivery in deliveries:
            keys.append(delivery.queue_key)
            args += [delivery.member, delivery.stored, delivery.envelope]
        result = self._finish(keys=keys, args=args)
        return FinishOutcome(as_text(result[0]))

    def cancel(self, instruction_id: str, reason: str = "cancelled") -> bool:
        """CANCELLED, only from QUEUED: a call already being dispatched or placed goes on."""
        return self.end_many([instruction_id], CallState.CANCELLED, reason) == 1

    def end_many(self, instruction_ids: Sequence[str], to: CallState, reason: str) -> int:
        """Move many QUEUED ids to a terminal state in one round trip; returns how many moved."""
        pipe = self.redis.pipeline(transaction=False)
        for iid in instruction_ids:
            args = [*self._base_args(iid), "", to.value, CallState.QUEUED.value, 0, 0, 0, ""]
            args += [1, "last_error", reason]
            self._transition(keys=[self.key(iid), self.keys.slots("none")], args=args, client=pipe)
        return sum(1 for result in pipe.execute() if as_text(result[0]) == "ok")

    # records
    def record_from(self, instruction_id: str, raw: dict[Any, Any]) -> CallRecord:
        """A record from its raw hash (HGETALL), the payload decrypted, the code left out."""
        fields = {
            as_text(k): as_text(v) for k, v in raw.items() if as_text(k) not in _HIDDEN_FIELDS
        }
        payload = json.loads(self.cipher.open(fields.get("payload", "{}")))
        return CallRecord(
            instruction_id=instruction_id,
            kind=fields.get("kind", ""),
            state=CallState(fields.get("state", "QUEUED")),
            payload=payload,
            fields=fields,
        )
