"""The JSON examples of CM's Voice API documentation, as Python data.

Copied from ``reference/cm-voice-api-apps.txt`` with three changes, and nothing else:

- the ``xxx`` placeholders are real-looking Dutch numbers (callee 06 1234 5678, caller
  076 123 4567), in the form each example uses (``00...`` or ``+...``);
- the notification callback lacks its opening brace in the document: it is an object here;
- the DTMF example's ``That'\\''s not right!`` is shell quoting copied from the cURL sample
  (and ``\\'`` is not even a JSON escape): the text is ``That's not right!``.
"""

from __future__ import annotations

from typing import Any

CALLEE_00 = "0031612345678"
CALLER_00 = "0031761234567"
CALLEE = "+31612345678"
CALLER = "+31761234567"

NOTIFICATION_INSTRUCTION: dict[str, Any] = {
    "callee": CALLEE_00,
    "caller": CALLER_00,
    "prompt": "This is a test notification call using the C M voice A P I.",
    "prompt-type": "TTS",
    "voicemail-response": "Ignore",
    "max-replays": 2,
    "auto-replay": False,
    "replay-prompt": "Press 1 to repeat this message.",
}

OTP_INSTRUCTION: dict[str, Any] = {
    "callee": CALLEE,
    "caller": CALLER,
    "intro-prompt": "Welcome to the C M password service.",
    "intro-prompt-type": "TTS",
    "code": "123abc",
    "code-type": "TTS",
    "replay-prompt": "Press 1 to replay your code.",
    "replay-prompt-type": "TTS",
    "outro-prompt": "Thank you for using this service.",
    "outro-prompt-type": "TTS",
    "voicemail-response": "Ignore",
}

DTMF_INSTRUCTION: dict[str, Any] = {
    "callee": CALLEE,
    "caller": CALLER,
    "prompt": "This is an automated voice response system from C M. Please enter some digits.",
    "prompt-type": "TTS",
    "valid-prompt": "Thank you for your input.",
    "valid-prompt-type": "TTS",
    "invalid-prompt": "That's not right!",
    "invalid-prompt-type": "TTS",
    "min-digits": 2,
    "max-digits": 5,
    "max-attempts": 3,
}

NOTIFICATION_FINISHED: dict[str, Any] = {
    "type": "notification-finished",
    "call-id": "6d0f176e-00ac-4de2-a04d-b3f7c895adb0",
    "instruction-id": "aeba8cae-eadd-4b49-9350-8061893b3d66",
    "caller": CALLER_00,
    "callee": CALLEE_00,
    "result": {"code": 10, "description": "Finished"},
    "started-on": "2018-02-09T11:00:31.752Z",
    "answered-on": "2018-02-09T11:00:37.972Z",
    "finished-on": "2018-02-09T11:00:48.112Z",
}

OTP_FINISHED: dict[str, Any] = {
    "type": "otp-finished",
    "call-id": "6d0f176e-00ac-4de2-a04d-b3f7c895adb0",
    "instruction-id": "aeba8cae-eadd-4b49-9350-8061893b3d66",
    "callee": CALLEE,
    "caller": CALLER,
    "result": {"code": 10, "description": "Finished"},
    "started-on": "2018-02-09T11:00:31.752Z",
    "answered-on": "2018-02-09T11:00:37.972Z",
    "finished-on": "2018-02-09T11:00:48.112Z",
}

DTMF_FINISHED: dict[str, Any] = {
    "type": "dtmf-finished",
    "call-id": "6d0f176e-00ac-4de2-a04d-b3f7c895adb0",
    "instruction-id": "aeba8cae-eadd-4b49-9350-8061893b3d66",
    "callee": CALLEE,
    "caller": CALLER,
    "result": {"code": 10, "description": "Finished"},
    "started-on": "2018-02-09T11:00:31.752Z",
    "answered-on": "2018-02-09T11:00:37.972Z",
    "finished-on": "2018-02-09T11:00:48.112Z",
    "digits": "1234",
}

#: The "Result codes" chapter's example of a result object.
RESULT: dict[str, Any] = {"code": 10, "description": "Finished successfully"}


def with_e164_numbers(example: dict[str, Any]) -> dict[str, Any]:
    """The example as CM receives it from cmvoice: callee and caller in E.164 (``+31...``)."""
    sent = dict(example)
    for field in ("callee", "caller"):
        if sent[field].startswith("00"):
            sent[field] = "+" + sent[field][2:]
    return sent
