"""Campaign helpers the end-to-end tests share: files, the store, counters and reports."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

from cmvoice.campaigns.enqueue import CampaignEnqueuer, EnqueueReport, start_campaign
from cmvoice.campaigns.model import Campaign
from cmvoice.campaigns.pacer import Pacer
from cmvoice.campaigns.report import write_report
from cmvoice.campaigns.store import CampaignStore
from cmvoice.runtime import get_runtime
from tests.support.stack import CALLER, Stack


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def numbered_callees(count: int) -> list[str]:
    # Endings 20..: the simulator answers them with code 10 (no redials).
    return [f"+316123456{20 + n:02d}" for n in range(count)]


def many_callees(count: int, block: int = 1) -> list[str]:
    """``count`` distinct Dutch mobile numbers, all answered by the simulator (they end in 0);
    campaigns given different ``block``s (1..5) call different numbers."""
    return [f"+316{block}{n:06d}0" for n in range(count)]


def campaign_of(
    tmp_path: Path, callees: list[str], *, rate: str | None = None, name: str = "calls"
) -> EnqueueReport:
    """A notification campaign of ``callees`` (one file per ``name``), started now."""
    path = write_csv(tmp_path / f"{name}.csv", ["callee"], [[c] for c in callees])
    template = {"caller": CALLER, "prompt": "Your parcel arrives today."}
    return start_campaign(get_runtime(), path, "notification", template=template, rate=rate)


def campaign_ids(campaign_id: str) -> list[str]:
    """The instruction ids of every row the campaign enqueued, in line order."""
    return [iid for chunk in store().call_chunks(campaign_id) for iid, _ in chunk]


def accepted(stack: Stack) -> list[tuple[str, datetime]]:
    """(instruction id, acceptance time) of every call the simulator placed, in that order."""
    return [
        (call["instruction-id"], datetime.fromisoformat(call["accepted-at"]))
        for call in stack.calls()
    ]


def notification_campaign(tmp_path: Path, count: int, rate: str) -> EnqueueReport:
    path = write_csv(tmp_path / "calls.csv", ["callee"], [[c] for c in numbered_callees(count)])
    template = {"caller": CALLER, "prompt": "Your appointment is tomorrow at nine."}
    return start_campaign(get_runtime(), path, "notification", template=template, rate=rate)


def store() -> CampaignStore:
    return CampaignStore(get_runtime())


def counts(campaign_id: str) -> dict[str, int]:
    progress = store().progress(campaign_id)
    return {state.value: count for state, count in progress.counts.items()}


def sent_at_of_placed_calls(stack: Stack) -> list[int]:
    ledger = get_runtime().ledger
    times = []
    for call in stack.calls():
        record = ledger.get(call["instruction-id"])
        assert record is not None
        times.append(record.get_int("sent_at"))
    return times


def report_of(campaign_id: str) -> list[dict[str, str]]:
    out = io.StringIO()
    write_report(store(), campaign_id, out)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def one_call_released(tmp_path: Path) -> tuple[Campaign, Pacer]:
    """A one-row campaign whose call the pacer released to the broker, no worker yet; and that
    pacer, holding its lease."""
    path = write_csv(tmp_path / "calls.csv", ["callee"], [["+31612345620"]])
    campaign = store().create("notification", path, template={"caller": CALLER, "prompt": "Hi."})
    CampaignEnqueuer(store(), campaign).run()
    pacer = Pacer(get_runtime())
    assert pacer.lease.hold()
    assert pacer.step().released_campaign == 1
    return campaign, pacer
