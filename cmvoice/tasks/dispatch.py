"""``cmvoice.dispatch``: claim one instruction with its slot and rate turn, POST it, record why.

The task's only argument is the instruction id (a claim check): the payload, the number and the
OTP code stay in the ledger, out of the broker, Flower and the logs. Every check before the POST
is one Lua step (lua/begin.lua) and the record after it one more (lua/placed.lua): see
docs/architecture.md, "Dispatch".
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task
from celery.exceptions import Ignore
from celery.signals import worker_ready

from cmvoice import metrics
from cmvoice.calls import CallState, Claim, Ended, Parked, SendDecision
from cmvoice.client import VoiceApiClient
from cmvoice.errors import AuthenticationFailed, CallFailed, CallNotAllowed, VoiceApiError
from cmvoice.instructions import MODELS
from cmvoice.messages import DISPATCH_TASK
from cmvoice.privacy import mask_number
from cmvoice.publishing import Lane, dispatch_later
from cmvoice.rules.enforce import CallingRules
from cmvoice.runtime import Runtime, get_runtime
from cmvoice.signing import callback_url
from cmvoice.worker import RETRY_ON_OUTAGE, app

logger = logging.getLogger(__name__)

#: Seconds after a 401/403 during which no call of the account is sent (no retry storm).
AUTH_FAILURE_HOLD_S = 300.0
#: Times a dispatch waits at the send gate; each wait is under an interval, and the rate turn
#: already paced it.
MAX_GATE_WAITS = 10


def dispatch_instruction(runtime: Runtime, instruction_id: str) -> str:
    """Run one dispatch; returns what happened in a few words (the task's result in Flower).

    Raises:
        CallFailed: the call ended FAILED for good (after the ledger recorded why).
    """
    settings = runtime.settings
    outcome = runtime.ledger.claim(
        instruction_id, settings.dispatch_lease, limits=runtime.limits, send_now=True
    )
    if outcome is None:
        logger.warning("dispatch %s: no such instruction in the ledger", instruction_id)
        return "missing: no such instruction"
    if isinstance(outcome, Parked):
        # It waits in Redis (its campaign's backlog or the waiting room), not in the broker.
        return f"waiting: {outcome.why}"
    if isinstance(outcome, Ended):
        if outcome.state is CallState.FAILED:
            raise CallFailed(f"failed: {outcome.why}")
        return f"{outcome.state.value.lower()}: {outcome.why}"
    if isinstance(outcome, CallState):
        # Another delivery of this task has it, or it is done: never POST twice.
        logger.info("dispatch %s: already %s, nothing to do", instruction_id, outcome.value)
        return f"skipped: already {outcome.value}"
    claim = outcome
    if claim.record.get("respect_window"):
        held = _held_by_window(runtime, claim)
        if held:
            return held
    # Built before the rate wait, not after it: a first call that sets it up after its turn
    # would reach CM late and bunch up with the next one.
    client = runtime.voice_client
    if claim.sending:
        metrics.observe_rate_wait(0.0)
    else:
        decision = _wait_turn(runtime, claim)
        if decision is not SendDecision.SENDING:
            if decision is SendDecision.LOST:
                logger.warning("dispatch %s: claim lost before sending", instruction_id)
            if decision is SendDecision.PAUSED:
                return "waiting: campaign paused"
            return f"{decision.value}: not sent"
    return _post(runtime, client, claim)


def _wait_turn(runtime: Runtime, claim: Claim) -> SendDecision:
    """Sleep until the rate turn, then pass the send gate (lua/mark_sending.lua)."""
    settings = runtime.settings
    lease = settings.connect_timeout + settings.http_timeout + settings.dispatch_lease
    wait_s = claim.wait_s
    slept_s = 0.0
    for _ in range(MAX_GATE_WAITS):
        if wait_s > 0:
            time.sleep(wait_s)
            slept_s += wait_s
        decision = runtime.ledger.mark_sending(claim, lease, runtime.limits)
        if isinstance(decision, SendDecision):
            metrics.observe_rate_wait(slept_s)
            return decision
        wait_s = decision
    metrics.observe_rate_wait(slept_s)
    # The turn was reserved, so more waits only mean clocks gone wrong: go anyway.
    decision = runtime.ledger.mark_sending(claim, lease)
    assert isinstance(decision, SendDecision)
    return decision


def _held_by_window(runtime: Runtime, claim: Claim) -> str:
    """An interactive call that asked to respect the calling window, dispatched while it is
    closed (a retry, a redial): back to Redis until it opens. Returns why, or ''."""
    callee = str(claim.record.payload.get("callee", ""))
    try:
        delay_s, why = CallingRules(runtime).window_delay_s(callee, runtime.ledger.server_time_ms())
    except CallNotAllowed as refusal:
        runtime.ledger.fail(
            claim.record.instruction_id,
            f"refused by rule {refusal.rule}: {refusal.reason}",
            claim=claim,
            slots_key=runtime.limits.slots_key,
        )
        raise CallFailed(f"failed: refused by rule {refusal.rule}: {refusal.reason}") from None
    if not delay_s:
        return ""
    runtime.ledger.release(
        claim, due_in_s=delay_s, slots_key=runtime.limits.slots_key, fields={"held_by": why}
    )
    runtime.schedule.add(claim.record.instruction_id, delay_s)
    return f"waiting: {why}"


def _post(runtime: Runtime, client: VoiceApiClient, claim: Claim) -> str:
    settings = runtime.settings
    record = claim.record
    iid = record.instruction_id
    payload = dict(record.payload)
    if claim.code is not None:
        payload["code"] = claim.code
    payload["instruction-id"] = iid
    payload["callback-url"] = callback_url(settings.callback_base_url, iid, runtime.callback_secret)
    callee = mask_number(record.payload.get("callee"))
    try:
        answers = client.send_payload(MODELS[record.kind].app, payload)
    except VoiceApiError as exc:
        return _after_error(runtime, claim, exc, callee)
    call_id = answers[0].call_id
    runtime.ledger.placed(claim, call_id)
    metrics.count_placed(record.kind)
    logger.info("dispatch %s: placed %s call to %s as %s", iid, record.kind, callee, call_id)
    return f"placed call {call_id}"


def _after_error(runtime: Runtime, claim: Claim, exc: VoiceApiError, callee: str) -> str:
    iid = claim.record.instruction_id
    slots = runtime.limits.slots_key
    decision = runtime.retry_policy.decide(exc, claim.record.attempts)
    metrics.count_failure(exc, decision.action)
    if decision.action == "retry":
        lane = Lane.of(claim.record.campaign_id)
        # A campaign's retry waits in its backlog (the pacer applies its rate and windows to
        # it); an interactive one is dispatched again after the delay.
        runtime.ledger.release(
            claim,
            due_in_s=decision.delay_s,
            error=decision.reason,
            count_attempt=decision.counts_as_attempt,
            slots_key=slots,
            park="retry after an error" if lane is Lane.CAMPAIGN else "",
        )
        if lane is Lane.INTERACTIVE:
            dispatch_later(runtime, iid, decision.delay_s)
        logger.warning("dispatch %s to %s: %s; retry in %.1fs", iid, callee, exc, decision.delay_s)
        return f"retry in {decision.delay_s:.1f}s: {_short(exc)}"
    if decision.action == "unknown":
        # The slot stays taken: the call may be ringing; the callback or the lease frees it.
        runtime.ledger.unknown(claim, decision.reason)
        logger.warning("dispatch %s to %s: outcome unknown: %s", iid, callee, exc)
        return f"unknown: {_short(exc)}; waiting for a callback"
    runtime.ledger.fail(iid, decision.reason, claim=claim, slots_key=slots)
    if isinstance(exc, AuthenticationFailed):
        runtime.reject_token(AUTH_FAILURE_HOLD_S)
        logger.critical(
            "CM refused the product token (%s): failing every dispatch for %ds without sending; "
            "check CMVOICE_PRODUCT_TOKEN",
            exc.status_code,
            AUTH_FAILURE_HOLD_S,
        )
    else:
        logger.error("dispatch %s to %s failed: %s", iid, callee, exc)
    raise CallFailed(f"failed: {_short(exc)}")


def _short(exc: VoiceApiError) -> str:
    """The error in a few words for a task result: its status and CM's message, no number."""
    return str(exc).splitlines()[0][:200]


@worker_ready.connect
def _warm_up(**_: object) -> None:
    """Build the runtime when the worker starts, not in the first dispatch's time slot."""
    runtime = get_runtime()
    runtime.voice_client  # noqa: B018 - building it is the point
    runtime.callback_secret  # noqa: B018


#: Custom Celery states for calls that did not end (Flower shows them as the task's state): the
#: task's own event says so, and the task is then ignored, so no SUCCESS hides it.
WAITING_STATES = (
    ("waiting: campaign paused", "task-held"),
    ("waiting: ", "task-waiting"),
    ("unknown: ", "task-unknown"),
)


@app.task(
    name=DISPATCH_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    # Expected endings of a call, not bugs: FAILURE in Flower without a traceback in the log.
    throws=(CallFailed,),
    **RETRY_ON_OUTAGE,
)
def dispatch(self: Task[Any, Any], instruction_id: str) -> str:
    """POST the instruction ``instruction_id`` to CM, exactly once.

    Ends SUCCESS (placed, or nothing to do), FAILURE (the call FAILED for good), or in a
    custom state when the call goes on elsewhere: WAITING (in Redis for a slot, a rate turn or
    its calling window), HELD (its campaign is paused) or UNKNOWN (waiting for CM's callback).
    """
    result = dispatch_instruction(get_runtime(), instruction_id)
    for prefix, event in WAITING_STATES:
        if result.startswith(prefix):
            self.send_event(event, result=repr(result))
            raise Ignore()
    return result
