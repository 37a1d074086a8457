"""Views of ledger records for people: masked numbers, readable times, never the OTP code;
and the attempt chains that link a call to its redials."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cmvoice.calls import CallRecord
from cmvoice.ledger import CallLedger
from cmvoice.privacy import mask_number

#: Ledger fields holding Redis server times in milliseconds.
_TIME_FIELDS = ("created_at", "updated_at", "sent_at", "due_at")
#: The fields of a record that say how its call ended (a report's columns, the API's outcome).
OUTCOME_FIELDS = (
    "result_code",
    "result_description",
    "digits",
    "started_on",
    "answered_on",
    "finished_on",
    "last_error",
)
#: Fields shown as they are, in this order, when present (numbers as numbers).
_PLAIN_FIELDS = (
    "campaign_id",
    "call_id",
    *OUTCOME_FIELDS,
    "waiting",
    "held_by",
    "refused_rule",
    "root_id",
    "attempt_no",
    "next_id",
)
#: Fields that are numbers: shown (and given as JSON) as numbers, not as Redis's text.
#: ``digits`` stays text: a leading zero the callee pressed matters.
_INT_FIELDS = frozenset({"result_code", "attempt_no"})
#: Longest redial chain followed: far above any redial policy, a guard against a cycle in
#: corrupted data.
MAX_CHAIN = 100


def format_ms(value: str) -> str:
    """A ledger time (ms since the epoch) as ISO 8601 UTC."""
    if not value:
        return ""
    moment = datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def describe_record(record: CallRecord) -> dict[str, Any]:
    """The record as a flat dict for ``cmvoice call status`` (callee and caller masked)."""
    view: dict[str, Any] = {
        "instruction_id": record.instruction_id,
        "kind": record.kind,
        "state": record.state.value,
        "callee": mask_number(record.payload.get("callee")),
        "caller": mask_number(record.payload.get("caller")),
        "error_attempts": record.attempts,
        "posts": record.get_int("posts"),
    }
    for name in _PLAIN_FIELDS:
        if record.get(name):
            view[name] = record.get_int(name) if name in _INT_FIELDS else record.get(name)
    for name in _TIME_FIELDS:
        if record.get(name):
            view[name] = format_ms(record.get(name))
    return view


def attempt_chains(ledger: CallLedger, first_ids: Sequence[str]) -> dict[str, list[CallRecord]]:
    """Each first attempt's records, then its redials (``next_id``), one round trip a step."""
    chains: dict[str, list[CallRecord]] = {iid: [] for iid in first_ids}
    pending = {iid: iid for iid in first_ids}  # record to read -> the id of its first attempt
    while pending:
        pipe = ledger.redis.pipeline(transaction=False)
        for record_id in pending:
            pipe.hgetall(ledger.key(record_id))
        following: dict[str, str] = {}
        for (record_id, root), raw in zip(pending.items(), pipe.execute(), strict=True):
            if not raw:
                continue  # expired
            record = ledger.record_from(record_id, raw)
            chains[root].append(record)
            next_id = record.get("next_id")
            if next_id and len(chains[root]) < MAX_CHAIN:
                following[next_id] = root
        pending = following
    return chains


def attempt_chain(ledger: CallLedger, instruction_id: str) -> list[CallRecord]:
    """Every attempt of the call ``instruction_id`` belongs to, first to last (redials linked)."""
    record = ledger.get(instruction_id)
    if record is None:
        return []
    root = record.get("root_id") or instruction_id
    return attempt_chains(ledger, [root])[root] or [record]
