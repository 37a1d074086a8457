"""How a simulated call unfolds: result, ring time, talk time and DTMF digits, in simulated seconds.

Times here are what a real call would take; the engine multiplies them by the time scale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cmvoice.events import ResultCode
from cmvoice.instructions import (
    DtmfInstruction,
    Instruction,
    NotificationInstruction,
    OtpInstruction,
    PromptType,
)
from cmvoice.simulator.dtmf import DtmfResult, default_keys, run_attempts
from cmvoice.simulator.scenarios import Outcome

#: Seconds between call-queued and the first ring (CM's queue and call setup).
DIAL_DELAY_S = 0.5
#: Seconds an answered call rings before the callee picks up.
ANSWER_AFTER_S = 4.0
#: Seconds a rejected call rings before the callee (or carrier) declines it.
REJECT_AFTER_S = 2.0
#: Seconds until a call that cannot be made is given up.
FAIL_AFTER_S = 1.0
#: CM's ringing timeout when the instruction sets no max-ringing-timeout.
DEFAULT_RINGING_TIMEOUT_S = 60.0
#: Speaking rate of text to speech.
TTS_CHARS_PER_S = 15.0
#: Length assumed for an audio file prompt (the simulator has no files to measure).
FILE_PROMPT_S = 3.0
#: Seconds to read one character of an OTP code (CM reads it character by character).
OTP_CHAR_S = 0.8
#: Seconds between two keys a callee presses.
KEY_INTERVAL_S = 0.5
#: CM's DTMF timeout when the instruction sets none, and its wait for a replay key.
DEFAULT_DTMF_TIMEOUT_S = 5.0

_SSML_TAG = re.compile(r"<[^>]*>")

#: Description and SIP disconnect code/reason per documented result code.
RESULTS: dict[int, tuple[str, str, str]] = {
    ResultCode.CANCELLED: ("Cancelled", "487", "Request Terminated"),
    ResultCode.FINISHED: ("Finished", "BYE", ""),
    ResultCode.FAILED: ("Failed", "503", "Service Unavailable"),
    ResultCode.REJECTED: ("Call rejected", "603", "Decline"),
}
_UNKNOWN_RESULT = ("Unknown", "500", "Server Internal Error")


@dataclass(frozen=True)
class CallPlan:
    """The simulated call, decided when the instruction is accepted."""

    code: int
    description: str
    sip_disconnect_code: str
    sip_disconnect_reason: str
    dial_s: float
    ring_s: float
    talk_s: float
    #: The DTMF attempts (None for the other apps, and for calls never answered).
    dtmf: DtmfResult | None = None

    @property
    def answered(self) -> bool:
        return self.code == ResultCode.FINISHED

    @property
    def duration_s(self) -> float:
        """From call-queued to hang-up."""
        return self.dial_s + self.ring_s + self.talk_s

    @property
    def digits(self) -> str | None:
        return self.dtmf.digits if self.dtmf is not None else None


def prompt_s(text: str | None, prompt_type: PromptType | None) -> float:
    """How long a prompt plays: TTS by its length, a file a fixed time, nothing when absent."""
    if not text:
        return 0.0
    # CM's documented default prompt type is File; that is what an unset type means.
    if prompt_type in (PromptType.TTS, PromptType.TTS_SSML):
        spoken = _SSML_TAG.sub("", text) if prompt_type is PromptType.TTS_SSML else text
        return len(spoken) / TTS_CHARS_PER_S
    return FILE_PROMPT_S


def _replays(max_replays: int, auto_replay: bool | None, outcome: Outcome) -> int:
    # Auto-replay plays every replay; otherwise the callee decides (default: no key, no replay).
    if auto_replay:
        return max_replays
    return min(outcome.replays or 0, max_replays)


def notification_talk_s(instruction: NotificationInstruction, outcome: Outcome) -> float:
    """Prompt, plus a replay prompt and a wait for "1" after each play that can be replayed."""
    max_replays = instruction.max_replays or 0
    replays = _replays(max_replays, instruction.auto_replay, outcome)
    play_s = prompt_s(instruction.prompt, instruction.prompt_type)
    ask_s = 0.0
    if max_replays and not instruction.auto_replay:
        # CM's documented default type for the Notification replay prompt is TTS.
        replay_type = instruction.replay_prompt_type or PromptType.TTS
        ask_s = prompt_s(instruction.replay_prompt, replay_type) + DEFAULT_DTMF_TIMEOUT_S
    asks = min(replays + 1, max_replays)
    return play_s * (replays + 1) + ask_s * asks


def otp_talk_s(instruction: OtpInstruction, outcome: Outcome) -> float:
    """Intro, then code prompt and code once per play, replay prompts, and the outro."""
    max_replays = 3 if instruction.max_replays is None else instruction.max_replays
    replays = _replays(max_replays, instruction.auto_replay, outcome)
    code_s = prompt_s(instruction.code_prompt, instruction.code_prompt_type) + (
        len(instruction.code) * OTP_CHAR_S
    )
    ask_s = 0.0
    if max_replays and not instruction.auto_replay:
        ask_s = (
            prompt_s(instruction.replay_prompt, instruction.replay_prompt_type)
            + DEFAULT_DTMF_TIMEOUT_S
        )
    asks = min(replays + 1, max_replays)
    return (
        prompt_s(instruction.intro_prompt, instruction.intro_prompt_type)
        + code_s * (replays + 1)
        + ask_s * asks
        + prompt_s(instruction.outro_prompt, instruction.outro_prompt_type)
    )


def dtmf_talk_s(instruction: DtmfInstruction, result: DtmfResult) -> float:
    """Per attempt: the prompt, the keys (or the timeout), then the valid or invalid prompt."""
    timeout_s = (instruction.timeout or DEFAULT_DTMF_TIMEOUT_S * 1000) / 1000
    question_s = prompt_s(instruction.prompt, instruction.prompt_type)
    valid_s = prompt_s(instruction.valid_prompt, instruction.valid_prompt_type)
    invalid_s = prompt_s(instruction.invalid_prompt, instruction.invalid_prompt_type)
    total_s = 0.0
    for attempt in result.attempts:
        pressed = len(attempt.digits) + (1 if attempt.terminated else 0)
        # CM waits a full timeout for the first key, or for more keys after the last one,
        # unless a terminator or the max-digits-th key ended the input.
        complete = attempt.terminated or len(attempt.digits) >= instruction.max_digits
        input_s = pressed * KEY_INTERVAL_S + (0.0 if complete else timeout_s)
        total_s += question_s + input_s + (valid_s if attempt.valid else invalid_s)
    return total_s


def _script(instruction: Instruction, outcome: Outcome) -> tuple[float, DtmfResult | None]:
    """Talk time of an answered call, and the DTMF attempts for the Request-DTMF app."""
    if isinstance(instruction, DtmfInstruction):
        keys = outcome.keys if outcome.keys is not None else default_keys(instruction)
        dtmf = run_attempts(instruction, keys)
        return dtmf_talk_s(instruction, dtmf), dtmf
    if isinstance(instruction, OtpInstruction):
        return otp_talk_s(instruction, outcome), None
    return notification_talk_s(instruction, outcome), None


def plan_call(instruction: Instruction, outcome: Outcome) -> CallPlan:
    """Decide how the call goes: ring, then (if answered) the app's script."""
    ringing_timeout_s = float(instruction.max_ringing_timeout or DEFAULT_RINGING_TIMEOUT_S)
    dtmf: DtmfResult | None = None
    talk_s = 0.0
    if outcome.code == ResultCode.FINISHED:
        ring_s = min(ANSWER_AFTER_S, ringing_timeout_s)
        talk_s, dtmf = _script(instruction, outcome)
    elif outcome.code == ResultCode.CANCELLED:
        ring_s = ringing_timeout_s
    elif outcome.code == ResultCode.REJECTED:
        ring_s = REJECT_AFTER_S
    else:
        ring_s = FAIL_AFTER_S
    description, sip_code, sip_reason = RESULTS.get(outcome.code, _UNKNOWN_RESULT)
    return CallPlan(
        code=outcome.code,
        description=outcome.description or description,
        sip_disconnect_code=outcome.sip_disconnect_code or sip_code,
        sip_disconnect_reason=sip_reason,
        dial_s=DIAL_DELAY_S,
        ring_s=ring_s,
        talk_s=talk_s,
        dtmf=dtmf,
    )
