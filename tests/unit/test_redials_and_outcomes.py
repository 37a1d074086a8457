"""Whether a redial follows a callback, the ids of redials and deliveries, outcomes from dicts."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cmvoice.config import Settings
from cmvoice.ledger import CallRecord, CallState
from cmvoice.outcomes import CallOutcome, delivery_id_for
from cmvoice.tasks.results import redial_decision, redial_id_for

INSTRUCTION_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
CALL_ID = "6d0f176e-00ac-4de2-a04d-b3f7c895adb0"
OTHER_CALL_ID = "a1b2c3d4-0000-4000-8000-000000000001"

#: Redial "not answered" (9) and "rejected" (12), at most three attempts in all.
SETTINGS = Settings(broker_url="redis://127.0.0.1:1/0", redial_codes=[9, 12], redial_max_attempts=3)


def placed(kind: str = "notification", attempt_no: int | None = 1) -> CallRecord:
    fields = {"state": "PLACED", "kind": kind}
    if attempt_no is not None:
        fields["attempt_no"] = str(attempt_no)
    return CallRecord(INSTRUCTION_ID, kind, CallState.PLACED, {}, fields)


@pytest.mark.parametrize(
    ("kind", "attempt_no", "code", "why_not"),
    [
        # the redial case: a code of the policy, attempts left, not an OTP
        ("notification", 1, 9, None),
        ("notification", 2, 12, None),
        ("dtmf", 1, 9, None),
        ("notification", None, 9, None),
        # a code the policy does not redial
        ("notification", 1, 10, "code 10 is not redialed"),
        ("notification", 1, 11, "code 11 is not redialed"),
        # the last attempt
        ("notification", 3, 9, "attempt 3 was the last"),
        ("dtmf", 4, 12, "attempt 4 was the last"),
        # an OTP is never redialed: its code was deleted once CM had it
        ("otp", 1, 9, "OTP calls are not redialed (their code is gone)"),
        # the code is judged first
        ("otp", 3, 10, "code 10 is not redialed"),
    ],
)
def test_a_redial_follows_only_a_redialed_code_with_attempts_left_and_never_an_otp(
    kind: str, attempt_no: int | None, code: int, why_not: str | None
) -> None:
    # Given a placed call of this kind and attempt, and CM's result code
    # When / Then: None means "redial"; otherwise the reason none follows
    assert redial_decision(SETTINGS, placed(kind, attempt_no), code) == why_not


def test_with_one_attempt_allowed_nothing_is_ever_redialed() -> None:
    # Given a policy of a single attempt
    settings = Settings(broker_url="redis://127.0.0.1:1/0", redial_max_attempts=1)

    # When / Then
    assert redial_decision(settings, placed(), 9) == "attempt 1 was the last"


def test_a_redials_id_is_the_same_every_time_and_differs_per_call() -> None:
    # Given / When the id of the redial after one call is computed twice, and after another call
    first = redial_id_for(INSTRUCTION_ID, CALL_ID)
    again = redial_id_for(INSTRUCTION_ID, CALL_ID)
    other = redial_id_for(INSTRUCTION_ID, OTHER_CALL_ID)

    # Then a duplicated callback creates the same redial, a different call a new one
    assert first == again
    assert first != other
    assert uuid.UUID(first).version == 5
    assert INSTRUCTION_ID not in (first, other)


def test_a_delivery_id_is_the_same_for_every_delivery_of_one_attempt() -> None:
    # Given / When
    first = delivery_id_for(INSTRUCTION_ID, CALL_ID)
    again = delivery_id_for(INSTRUCTION_ID, CALL_ID)
    next_attempt = delivery_id_for(INSTRUCTION_ID, OTHER_CALL_ID)
    other_instruction = delivery_id_for(redial_id_for(INSTRUCTION_ID, CALL_ID), CALL_ID)

    # Then a re-publish carries the same id; another attempt its own
    assert first == again
    assert len({first, next_attempt, other_instruction}) == 3
    assert uuid.UUID(first).version == 5


def test_a_delivery_id_is_not_the_redial_id_of_the_same_call() -> None:
    # Given / When / Then: the two namespaces keep the ids apart
    assert delivery_id_for(INSTRUCTION_ID, CALL_ID) != redial_id_for(INSTRUCTION_ID, CALL_ID)


OUTCOME: dict[str, Any] = {
    "instruction_id": INSTRUCTION_ID,
    "root_instruction_id": INSTRUCTION_ID,
    "kind": "dtmf",
    "attempt": 1,
    "final": True,
    "result_code": 10,
    "description": "Finished",
    "call_id": CALL_ID,
    "digits": "1234",
    "started_on": "2026-11-26T12:00:00Z",
    "answered_on": "2026-11-26T12:00:05Z",
    "finished_on": "2026-11-26T12:00:30Z",
    "campaign_id": None,
    "redial_instruction_id": None,
    "delivery_id": delivery_id_for(INSTRUCTION_ID, CALL_ID),
}


def test_an_outcome_round_trips_through_its_dict() -> None:
    # Given an outcome as a result task receives it
    # When it is read and written back
    outcome = CallOutcome.from_dict(OUTCOME)

    # Then nothing is lost or changed
    assert outcome.to_dict() == OUTCOME


def test_an_outcome_from_a_newer_version_with_more_keys_is_still_read() -> None:
    # Given an outcome dict with keys this version does not know
    newer = {**OUTCOME, "sip_disconnect_code": "486", "region": "eu"}

    # When
    outcome = CallOutcome.from_dict(newer)

    # Then the known fields are read and the unknown ones ignored
    assert outcome.to_dict() == OUTCOME


def test_an_outcome_from_an_older_version_gets_the_defaults_of_missing_optional_fields() -> None:
    # Given an outcome without the optional fields
    required = {
        key: OUTCOME[key]
        for key in (
            "instruction_id",
            "root_instruction_id",
            "kind",
            "attempt",
            "final",
            "result_code",
            "description",
            "call_id",
        )
    }

    # When
    outcome = CallOutcome.from_dict(required)

    # Then
    assert (outcome.digits, outcome.campaign_id, outcome.delivery_id) == (None, None, "")
