"""One batch of a campaign's rows sorted, before anything is written: the calls to enqueue, and
the rows to report (invalid, refused by a calling rule, duplicate callees) with why."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from cmvoice.campaigns.guards import EnqueueGuards
from cmvoice.campaigns.model import Campaign, RowOutcome, instruction_id_for
from cmvoice.campaigns.rows import RowValidator, SourceRow
from cmvoice.campaigns.store import CampaignStore
from cmvoice.errors import FieldError, InvalidInstruction
from cmvoice.privacy import mask_number
from cmvoice.rules.enforce import (
    COUNTRY,
    NO_ZONE,
    ON_SUPPRESSION_LIST,
    SUPPRESSED,
    WINDOW,
    CallingRules,
    NumberFacts,
    facts,
    number_hash,
)


@dataclass(frozen=True)
class _Valid:
    """A row that passed validation, waiting for the checks that need Redis."""

    line: int
    instruction_id: str
    payload: dict[str, Any]
    callee: str


@dataclass
class Batch:
    """A batch's rows sorted into calls to enqueue and rows to report."""

    rows_read: int = 0
    invalid: int = 0
    duplicates: int = 0
    #: Rows a calling rule refused, by rule.
    refused: dict[str, int] = field(default_factory=dict)
    #: (line, instruction id, payload, what the rules know of its number) of each call.
    calls: list[tuple[int, str, dict[str, Any], NumberFacts]] = field(default_factory=list)
    rejected: list[tuple[int, FieldError, RowOutcome]] = field(default_factory=list)

    def reject(self, line: int, errors: list[FieldError]) -> None:
        self.invalid += 1
        self.rejected.extend((line, error, RowOutcome.INVALID) for error in errors)

    def refuse(self, line: int, rule: str, error: FieldError) -> None:
        self.refused[rule] = self.refused.get(rule, 0) + 1
        self.rejected.append((line, error, RowOutcome.REFUSED))


class BatchSorter:
    """Sorts a campaign's rows: validation and the country rule in memory, then one round trip
    each for the suppression list and the callees seen before (duplicates)."""

    def __init__(
        self, store: CampaignStore, campaign: Campaign, guards: EnqueueGuards, *, by_zone: bool
    ) -> None:
        self.store = store
        self.campaign = campaign
        self.guards = guards
        #: Whether a call needs its number's time zones (a calling window applies).
        self.by_zone = by_zone
        self.validator = RowValidator(campaign.kind, campaign.template)
        self.rules = CallingRules(store.runtime)
        self._salt = bytes.fromhex(campaign.salt)

    def sort(self, chunk: list[SourceRow]) -> Batch:
        """Validate the rows and find duplicate callees; nothing is written yet."""
        batch = Batch(rows_read=len(chunk))
        valid: list[_Valid] = []
        for row in chunk:
            if row.problem is not None:
                batch.reject(row.line, [row.problem])
                continue
            try:
                model = self.validator.validate(row.fields)
            except InvalidInstruction as exc:
                batch.reject(row.line, exc.errors)
                continue
            refusal = self.rules.country_error(model.callee)
            if refusal is not None:
                batch.refuse(row.line, COUNTRY, refusal)
                continue
            iid = instruction_id_for(self.campaign.campaign_id, row.line)
            valid.append(_Valid(row.line, iid, model.to_payload(), model.callee))
        valid = self._not_suppressed(batch, valid)
        if valid:
            self._add_calls(batch, valid)
        return batch

    def _add_calls(self, batch: Batch, valid: list[_Valid]) -> None:
        """The calls of ``valid``, each callee once unless the campaign allows duplicates."""
        owners = self.guards.claim_callees(
            self.campaign.campaign_id, [(self._callee_hash(row.callee), row.line) for row in valid]
        )
        dial_again = self.campaign.allow_duplicates
        for row, owner in zip(valid, owners, strict=True):
            masked = mask_number(row.callee)
            if owner != row.line:
                batch.duplicates += 1
                if dial_again:
                    rule = f"duplicate of line {owner}; dialed again (allow duplicates)"
                    outcome = RowOutcome.DUPLICATE_DIALED
                else:
                    rule = f"duplicate of line {owner}; not dialed again (one call per number)"
                    outcome = RowOutcome.DUPLICATE
                batch.rejected.append((row.line, FieldError("callee", rule, masked), outcome))
                if not dial_again:
                    continue
            known = facts(self.store.runtime, row.callee)
            if self.by_zone and not known.zone_group:
                batch.refuse(row.line, WINDOW, FieldError("callee", NO_ZONE, masked))
                continue
            batch.calls.append((row.line, row.instruction_id, row.payload, known))

    def _not_suppressed(self, batch: Batch, valid: list[_Valid]) -> list[_Valid]:
        """The rows whose number is not on the suppression list (one round trip)."""
        hashes = [number_hash(self.store.runtime, row.callee) for row in valid]
        found = self.store.redis.hmget(self.store.keys.suppressed(), hashes) if hashes else []
        kept = []
        for row, entry in zip(valid, found, strict=True):
            if entry is None:
                kept.append(row)
                continue
            why = f"{SUPPRESSED}: {ON_SUPPRESSION_LIST}"
            batch.refuse(row.line, SUPPRESSED, FieldError("callee", why, mask_number(row.callee)))
        return kept

    def _callee_hash(self, callee: str) -> str:
        """The callee as the campaign's duplicate check knows it (salted per campaign)."""
        return hmac.new(self._salt, callee.encode(), hashlib.sha256).hexdigest()[:32]
