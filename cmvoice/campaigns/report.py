"""``campaign report``: one CSV row per row of the campaign's file, and what became of it."""

from __future__ import annotations

import csv
import heapq
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

from cmvoice.campaigns.model import RowOutcome, chunks, spreadsheet_safe
from cmvoice.campaigns.store import CHUNK, CampaignStore
from cmvoice.privacy import mask_number
from cmvoice.records import OUTCOME_FIELDS, attempt_chains

#: Columns of the report, in order.
REPORT_COLUMNS = ("line", "instruction_id", "callee", "state", "attempts", *OUTCOME_FIELDS)


@dataclass(frozen=True)
class ReportRow:
    """A row of the file and its outcome: the last attempt of its call, or why it was not called.

    ``attempts`` counts the call's records: 1, plus one per redial. ``state`` is a ledger state
    (FINISHED, FAILED, CANCELLED...), or INVALID / DUPLICATE for a row that was not called, or
    GONE when the ledger record outlived its retention. EXPIRED is a call not placed before
    its deadline.
    """

    line: int
    instruction_id: str = ""
    callee: str = ""
    state: str = ""
    attempts: int = 0
    result_code: str = ""
    result_description: str = ""
    digits: str = ""
    started_on: str = ""
    answered_on: str = ""
    finished_on: str = ""
    last_error: str = ""

    def cells(self) -> list[str]:
        return [spreadsheet_safe(getattr(self, name)) for name in REPORT_COLUMNS]


def report_rows(
    store: CampaignStore, campaign_id: str, *, unmask: bool = False
) -> Iterator[ReportRow]:
    """Every row in line order, streamed: memory stays flat in the campaign's size.

    Callees are masked unless ``unmask``; a duplicate row only ever shows the masked number.
    """
    store.get(campaign_id)
    calls = (
        row
        for chunk in store.call_chunks(campaign_id)
        for row in _call_rows(store, chunk, unmask=unmask)
    )
    yield from heapq.merge(calls, _rejected_rows(store, campaign_id), key=lambda row: row.line)


def write_report(
    store: CampaignStore, campaign_id: str, out: TextIO, *, unmask: bool = False
) -> int:
    """Write the report as CSV to ``out``; returns the number of rows written."""
    count = 0
    for text, rows in report_csv_chunks(store, campaign_id, unmask=unmask):
        out.write(text)
        count += rows
    return count


def report_csv_chunks(
    store: CampaignStore, campaign_id: str, *, unmask: bool = False, rows_per_chunk: int = CHUNK
) -> Iterator[tuple[str, int]]:
    """The report as CSV text in pieces, each with its number of rows: the header, then up to
    ``rows_per_chunk`` rows at a time. What ``write_report`` writes, and the API streams."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(REPORT_COLUMNS)
    yield buffer.getvalue(), 0
    for rows in chunks(report_rows(store, campaign_id, unmask=unmask), rows_per_chunk):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(row.cells() for row in rows)
        yield buffer.getvalue(), len(rows)


def _call_rows(
    store: CampaignStore, chunk: list[tuple[str, int]], *, unmask: bool
) -> list[ReportRow]:
    chains = attempt_chains(store.ledger, [iid for iid, _ in chunk])
    rows = []
    for iid, line in chunk:
        chain = chains[iid]
        if not chain:
            rows.append(ReportRow(line, iid, state="GONE", last_error="ledger record expired"))
            continue
        first, last = chain[0], chain[-1]
        callee = str(first.payload.get("callee", ""))
        rows.append(
            ReportRow(
                line=line,
                instruction_id=iid,
                callee=callee if unmask else mask_number(callee),
                state=last.state.value,
                attempts=len(chain),
                **{name: last.get(name) for name in OUTCOME_FIELDS},
            )
        )
    return rows


def _rejected_rows(store: CampaignStore, campaign_id: str) -> Iterator[ReportRow]:
    """Rows not called: invalid ones, and duplicates (a duplicate dialed anyway is a call)."""
    entries = (
        entry
        for entry in store.rejected_entries(campaign_id)
        if entry[2] is not RowOutcome.DUPLICATE_DIALED
    )
    for line, group in itertools.groupby(entries, key=lambda entry: entry[0]):
        errors = list(group)
        outcome = errors[0][2]
        callee = errors[0][1].value if outcome is RowOutcome.DUPLICATE else ""
        message = "; ".join(f"{error.field}: {error.rule}" for _, error, _ in errors)
        yield ReportRow(line, callee=callee, state=outcome.value, last_error=message)
