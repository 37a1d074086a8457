"""``cmvoice.dispatch``: claim one instruction, wait for the limits, POST it to CM, record why.

The task's only argument is the instruction id (a claim check): the payload, the number and the
OTP code stay in the ledger, out of the broker, Flower and the logs.
"""

from __future__ import annotations

import logging

from celery.signals import worker_ready

from cmvoice.campaigns import CampaignStatus
from cmvoice.client import VoiceApiClient
from cmvoice.config import parse_rate
from cmvoice.errors import AuthenticationFailed, VoiceApiError
from cmvoice.instructions import MODELS
from cmvoice.ledger import CallState, Claim, SendDecision, as_text
from cmvoice.privacy import mask_number
from cmvoice.producer import dispatch_later
from cmvoice.ratelimit import GcraLimiter
from cmvoice.runtime import Runtime, get_runtime
from cmvoice.signing import callback_url
from cmvoice.worker import DISPATCH_QUEUE, DISPATCH_TASK, RETRY_ON_OUTAGE, app

logger = logging.getLogger(__name__)

#: Seconds a dispatch waits before asking again for a concurrency slot.
SLOT_RETRY_S = 1.0
#: Due time given to a call held by a paused campaign: far off, so the reconciler leaves it be;
#: resuming the campaign dispatches it at once.
PAUSED_HOLD_S = 86400.0
#: Seconds after a 401/403 during which no call of the account is sent (no retry storm).
AUTH_FAILURE_HOLD_S = 300.0


def dispatch_instruction(runtime: Runtime, instruction_id: str) -> str:
    """Run one dispatch; returns a short outcome for the task result and the logs."""
    settings = runtime.settings
    claim = runtime.ledger.claim(instruction_id, lease_s=settings.dispatch_lease)
    if claim is None:
        logger.warning("dispatch %s: no such instruction in the ledger", instruction_id)
        return "missing"
    if not isinstance(claim, Claim):
        # Another delivery of this task has it, or it is done: never POST twice.
        logger.info("dispatch %s: already %s, nothing to do", instruction_id, claim.value)
        return f"skipped: {claim.value}"

    if runtime.token_rejected():
        reason = "CM refused the product token minutes ago; not sent (fix CMVOICE_PRODUCT_TOKEN)"
        runtime.ledger.fail(instruction_id, reason, claim=claim)
        return "failed: bad token"

    campaign_id = claim.record.campaign_id
    status = _campaign_status(runtime, campaign_id) if campaign_id else ""
    if status in (CampaignStatus.PAUSED, CampaignStatus.CANCELLED):
        # Checked early too, so that a paused campaign's calls take no slot and no rate. The
        # check that counts is the atomic one just before the POST (mark_sending).
        if status == CampaignStatus.PAUSED:
            return _hold(runtime, claim)
        runtime.ledger.transition(
            instruction_id,
            CallState.CANCELLED,
            allowed=(CallState.DISPATCHING,),
            token=claim.token,
            fields={"last_error": "campaign cancelled"},
        )
        return "skipped: cancelled"

    if not runtime.slots.acquire(instruction_id):
        runtime.ledger.release(claim, due_in_s=SLOT_RETRY_S, error="")
        dispatch_later(runtime, instruction_id, SLOT_RETRY_S)
        return "waiting for a concurrency slot"

    # Build the HTTP client now, not after the rate-limit sleep: a first call that sets it up
    # after its slot would reach CM late and bunch up with the next one.
    client = runtime.voice_client
    # A campaign's own rate first, then the account's: both must allow the call.
    for limiter in (_campaign_limiter(runtime, claim.record.campaign_id), runtime.rate_limiter):
        if limiter is None:
            continue
        reservation = limiter.reserve(max_wait_s=settings.max_rate_wait)
        if not reservation.granted:
            # The next free slot is far away: give the thread back instead of sleeping in it.
            runtime.slots.release(instruction_id)
            delay = max(reservation.wait_s - settings.max_rate_wait / 2, 0.05)
            runtime.ledger.release(claim, due_in_s=delay)
            dispatch_later(runtime, instruction_id, delay)
            return "waiting for the rate limit"
        limiter.wait_turn(reservation)

    return _post(runtime, client, claim)


def _campaign_status(runtime: Runtime, campaign_id: str) -> str:
    return as_text(runtime.redis.hget(runtime.ledger.campaign_key(campaign_id), "status") or "")


def _hold(runtime: Runtime, claim: Claim) -> str:
    """Hold a paused campaign's call until it resumes (resume dispatches its held calls)."""
    iid = claim.record.instruction_id
    runtime.ledger.release(claim, due_in_s=PAUSED_HOLD_S)
    runtime.redis.sadd(runtime.ledger.campaign_key(claim.record.campaign_id or "") + ":held", iid)
    return "held: campaign paused"


def _campaign_limiter(runtime: Runtime, campaign_id: str | None) -> GcraLimiter | None:
    """The campaign's own rate limiter, when it was started with ``--rate``."""
    if not campaign_id:
        return None
    rate = runtime.redis.hget(runtime.ledger.campaign_key(campaign_id), "rate")
    if not rate:
        return None
    limit = parse_rate(as_text(rate))
    return GcraLimiter(runtime.redis, f"cmvoice:rate:campaign:{campaign_id}", limit)


def _post(runtime: Runtime, client: VoiceApiClient, claim: Claim) -> str:
    settings = runtime.settings
    record = claim.record
    iid = record.instruction_id
    # Long enough for the request's own timeouts, plus a dispatch lease to record the answer.
    lease = settings.connect_timeout + settings.http_timeout + settings.dispatch_lease
    decision = runtime.ledger.mark_sending(claim, lease_s=lease)
    if decision is not SendDecision.SENDING:
        runtime.slots.release(iid)
        if decision is SendDecision.PAUSED:
            return _hold(runtime, claim)
        if decision is SendDecision.LOST:
            logger.warning("dispatch %s: claim lost before sending; another worker has it", iid)
        return f"skipped: {decision.value}"

    payload = dict(record.payload)
    if claim.code is not None:
        payload["code"] = claim.code
    payload["instruction-id"] = iid
    payload["callback-url"] = callback_url(settings.callback_base_url, iid, runtime.callback_secret)
    app_path = MODELS[record.kind].app
    callee = mask_number(record.payload.get("callee"))
    try:
        answers = client.send_payload(app_path, payload)
    except VoiceApiError as exc:
        return _after_error(runtime, claim, exc, callee)
    call_id = answers[0].call_id
    runtime.ledger.placed(claim, call_id)
    logger.info("dispatch %s: placed %s call to %s as %s", iid, record.kind, callee, call_id)
    return "placed"


def _after_error(runtime: Runtime, claim: Claim, exc: VoiceApiError, callee: str) -> str:
    iid = claim.record.instruction_id
    decision = runtime.retry_policy.decide(exc, claim.record.attempts)
    if decision.action == "retry":
        runtime.slots.release(iid)
        runtime.ledger.release(
            claim,
            due_in_s=decision.delay_s,
            error=decision.reason,
            count_attempt=decision.counts_as_attempt,
        )
        dispatch_later(runtime, iid, decision.delay_s)
        logger.warning(
            "dispatch %s to %s: %s; retrying in %.1fs", iid, callee, exc, decision.delay_s
        )
        return f"retry in {decision.delay_s:.1f}s"
    if decision.action == "unknown":
        # Keep the concurrency slot: the call may be ringing; the callback or the lease frees it.
        runtime.ledger.unknown(claim, decision.reason)
        logger.warning("dispatch %s to %s: outcome unknown: %s", iid, callee, exc)
        return "unknown"
    runtime.slots.release(iid)
    runtime.ledger.fail(iid, decision.reason, claim=claim)
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
    return "failed"


@worker_ready.connect
def _warm_up(**_: object) -> None:
    """Build the runtime when the worker starts, not in the first dispatch's time slot."""
    runtime = get_runtime()
    runtime.voice_client  # noqa: B018 - building it is the point
    runtime.callback_secret  # noqa: B018


@app.task(
    name=DISPATCH_TASK,
    queue=DISPATCH_QUEUE,
    acks_late=True,
    reject_on_worker_lost=True,
    **RETRY_ON_OUTAGE,
)
def dispatch(instruction_id: str) -> str:
    """POST the instruction ``instruction_id`` to CM, exactly once."""
    return dispatch_instruction(get_runtime(), instruction_id)
