"""cmvoice: a voice-call job queue for CM.com's Voice API, on Celery and Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cmvoice._version import __version__
from cmvoice.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from cmvoice.client import VoiceApiClient
    from cmvoice.delivery import result_task
    from cmvoice.errors import (
        AuthenticationFailed,
        CallFailed,
        CallNotAllowed,
        CmThrottled,
        CmUnavailable,
        CmUnreachable,
        CmVoiceError,
        InvalidEvent,
        InvalidInstruction,
        OutcomeUnknown,
        RequestRefused,
        VoiceApiError,
    )
    from cmvoice.events import (
        CallQueued,
        CallResult,
        DtmfFinished,
        NotificationFinished,
        OtpFinished,
        ResultCode,
        parse_event,
    )
    from cmvoice.instructions import (
        CodeType,
        DtmfInstruction,
        Gender,
        NotificationInstruction,
        OtpInstruction,
        PromptType,
        Voice,
        VoicemailResponse,
        parse_instruction,
    )
    from cmvoice.outcomes import CallOutcome, on_result
    from cmvoice.producer import Ticket, enqueue
    from cmvoice.rules.suppression import suppress, unsuppress
else:
    # Imported on first use: `import cmvoice.instructions` (or the `cmvoice` command) must not
    # pay for Celery, kombu and redis. The same names as above, by module.
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "cmvoice.client": ["VoiceApiClient"],
            "cmvoice.delivery": ["result_task"],
            "cmvoice.errors": [
                "AuthenticationFailed",
                "CallFailed",
                "CallNotAllowed",
                "CmThrottled",
                "CmUnavailable",
                "CmUnreachable",
                "CmVoiceError",
                "InvalidEvent",
                "InvalidInstruction",
                "OutcomeUnknown",
                "RequestRefused",
                "VoiceApiError",
            ],
            "cmvoice.events": [
                "CallQueued",
                "CallResult",
                "DtmfFinished",
                "NotificationFinished",
                "OtpFinished",
                "ResultCode",
                "parse_event",
            ],
            "cmvoice.instructions": [
                "CodeType",
                "DtmfInstruction",
                "Gender",
                "NotificationInstruction",
                "OtpInstruction",
                "PromptType",
                "Voice",
                "VoicemailResponse",
                "parse_instruction",
            ],
            "cmvoice.outcomes": ["CallOutcome", "on_result"],
            "cmvoice.producer": ["Ticket", "enqueue"],
            "cmvoice.rules.suppression": ["suppress", "unsuppress"],
        },
    )

__all__ = [
    "AuthenticationFailed",
    "CallFailed",
    "CallNotAllowed",
    "CallOutcome",
    "CallQueued",
    "CallResult",
    "CmThrottled",
    "CmUnavailable",
    "CmUnreachable",
    "CmVoiceError",
    "CodeType",
    "DtmfFinished",
    "DtmfInstruction",
    "Gender",
    "InvalidEvent",
    "InvalidInstruction",
    "NotificationFinished",
    "NotificationInstruction",
    "OtpFinished",
    "OtpInstruction",
    "OutcomeUnknown",
    "PromptType",
    "RequestRefused",
    "ResultCode",
    "Ticket",
    "Voice",
    "VoiceApiClient",
    "VoiceApiError",
    "VoicemailResponse",
    "__version__",
    "enqueue",
    "on_result",
    "parse_event",
    "parse_instruction",
    "result_task",
    "suppress",
    "unsuppress",
]
