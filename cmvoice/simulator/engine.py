"""SimulatorEngine: places accepted calls, lets them run as asyncio tasks, sends their callbacks."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cmvoice.events import (
    CallQueued,
    DtmfFinished,
    FinishedEvent,
    NotificationFinished,
    OtpFinished,
)
from cmvoice.instructions import (
    DtmfInstruction,
    Instruction,
    OtpInstruction,
)
from cmvoice.privacy import mask_number
from cmvoice.simulator.behaviour import CallPlan, plan_call
from cmvoice.simulator.callbacks import CallbackSender, DeliveryStatus
from cmvoice.simulator.config import SimulatorConfig
from cmvoice.simulator.faults import FaultInjector
from cmvoice.simulator.records import CallRecord, CallRegistry
from cmvoice.simulator.refusals import RefusedNumbers
from cmvoice.simulator.scenarios import ScenarioBook

logger = logging.getLogger("cmvoice.simulator")


def _event_class(instruction: Instruction) -> type[FinishedEvent]:
    if isinstance(instruction, DtmfInstruction):
        return DtmfFinished
    if isinstance(instruction, OtpInstruction):
        return OtpFinished
    return NotificationFinished


class SimulatorEngine:
    """The simulator's state and its calls in progress.

    Everything here runs on the server's event loop, so no lock guards the state; blocking work
    (callback POSTs) goes to the CallbackSender's threads.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.scenarios = ScenarioBook()
        self.refusals = RefusedNumbers()
        self.registry = CallRegistry()
        self.faults = FaultInjector(config.faults, config.seed)
        self._sender: CallbackSender | None = None
        self._calls: set[asyncio.Task[None]] = set()

    @property
    def calls_in_progress(self) -> int:
        return len(self._calls)

    async def start(self) -> None:
        self._sender = CallbackSender(
            retry_for_s=self.config.callback_retry_for_s,
            first_backoff_s=self.config.callback_first_backoff_s,
            post_timeout_s=self.config.callback_timeout_s,
            workers=self.config.callback_workers,
            # A lambda, not the bound method: reset() replaces the injector.
            jitter=lambda: self.faults.jitter(),
        )

    async def stop(self) -> None:
        await self.cancel_calls()
        if self._sender is not None:
            # Joins the callback threads: off the loop, which may still serve other tasks.
            await asyncio.to_thread(self._sender.close)
            self._sender = None

    async def cancel_calls(self) -> None:
        """Hang up every call in progress: their callbacks are never sent."""
        calls = list(self._calls)
        for task in calls:
            task.cancel()
        await asyncio.gather(*calls, return_exceptions=True)

    async def reset(self) -> None:
        """Forget calls, scenarios, refusals, faults and counters; the faults are cleared, not
        restored."""
        await self.cancel_calls()
        self.registry.clear()
        self.scenarios.clear()
        self.refusals.clear()
        self.faults = FaultInjector(None, self.config.seed)

    def place(self, instruction: Instruction, *, answered_with: str = "200") -> CallQueued:
        """Accept the instruction: decide its outcome, start the call, answer call-queued."""
        outcome = self.scenarios.next_outcome(instruction.callee)
        plan = plan_call(instruction, outcome)
        call_id = str(uuid.uuid4())
        accepted_at = datetime.now(UTC)
        event = self._finished_event(instruction, call_id, accepted_at, plan)
        record = CallRecord(
            call_id=call_id,
            instruction_id=instruction.instruction_id,
            app=instruction.app,
            callee=instruction.callee,
            caller=instruction.caller,
            code=plan.code,
            digits=plan.digits,
            accepted_at=accepted_at,
            finishes_at=event.finished_on,
            has_callback_url=bool(instruction.callback_url or self.config.default_callback_url),
            answered_with=answered_with,
        )
        self.registry.add(record)
        url = instruction.callback_url or self.config.default_callback_url
        delay_s = plan.duration_s * self.config.time_scale
        task = asyncio.create_task(self._run_call(record, event.to_payload(), url, delay_s))
        # The loop keeps only weak references to tasks: hold them until they end.
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        logger.info(
            "%s call %s placed (instruction %s, callee %s): result %d after %.1f s simulated",
            instruction.app,
            call_id,
            instruction.instruction_id,
            mask_number(instruction.callee),
            plan.code,
            plan.duration_s,
        )
        return CallQueued(
            call_id=call_id,
            instruction_id=instruction.instruction_id,
            caller=instruction.caller,
            callee=instruction.callee,
            success=True,
            error=None,
        )

    def _finished_event(
        self, instruction: Instruction, call_id: str, accepted_at: datetime, plan: CallPlan
    ) -> FinishedEvent:
        scale = self.config.time_scale
        started_on = accepted_at + timedelta(seconds=plan.dial_s * scale)
        answered_on = started_on + timedelta(seconds=plan.ring_s * scale) if plan.answered else None
        finished_on = started_on + timedelta(seconds=(plan.ring_s + plan.talk_s) * scale)
        fields: dict[str, Any] = {
            "call_id": call_id,
            "instruction_id": instruction.instruction_id,
            "caller": "anonymous" if instruction.anonymous else instruction.caller,
            "callee": instruction.callee,
            "result": {
                "code": plan.code,
                "description": plan.description,
                "sip_disconnect_code": plan.sip_disconnect_code,
                "sip_disconnect_reason": plan.sip_disconnect_reason,
            },
            "started_on": started_on,
            "answered_on": answered_on,
            "finished_on": finished_on,
        }
        if isinstance(instruction, DtmfInstruction):
            fields["digits"] = plan.digits or ""
        return _event_class(instruction).model_validate(fields)

    async def _run_call(
        self, record: CallRecord, payload: dict[str, Any], url: str | None, delay_s: float
    ) -> None:
        label = (
            f"{record.app} call {record.call_id} (instruction {record.instruction_id}, "
            f"callee {mask_number(record.callee)})"
        )
        try:
            await asyncio.sleep(delay_s)
            await self._send_callback(record, payload, url, label)
        except asyncio.CancelledError:
            if record.callback_status is DeliveryStatus.PENDING:
                record.callback_status = DeliveryStatus.CANCELLED
            raise

    async def _send_callback(
        self, record: CallRecord, payload: dict[str, Any], url: str | None, label: str
    ) -> None:
        if url is None:
            record.callback_status = DeliveryStatus.NO_URL
            logger.info("%s finished; no callback-url, nothing sent", label)
            return
        copies = self.faults.callback_copies()
        if copies == 0:
            record.callback_status = DeliveryStatus.DROPPED
            logger.info("%s finished; callback dropped (fault injection)", label)
            return
        record.duplicated = copies > 1
        assert self._sender is not None, "SimulatorEngine.start() was not awaited"
        for _ in range(copies):
            delivery = await self._sender.deliver(url, payload, label=label)
            record.callback_attempts += delivery.attempts
            record.callback_status = delivery.status
            if delivery.status is not DeliveryStatus.DELIVERED:
                return
            record.callbacks_delivered += 1
        logger.info(
            "%s finished with result %d; callback delivered%s",
            label,
            record.code,
            " twice (fault injection)" if copies > 1 else "",
        )
