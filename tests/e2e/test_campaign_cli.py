"""``cmvoice campaign``, run as a user runs it: interrupted mid-file, resumed, watched."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import redis

from cmvoice.campaigns.model import EnqueueState
from cmvoice.campaigns.store import CampaignStore
from cmvoice.config import Settings
from cmvoice.keyspace import Keys
from cmvoice.runtime import Runtime
from tests.support.stack import CALLER, wait_for
from tests.support.workers import CMVOICE, worker_env

ROWS = 20_000


def big_csv(path: Path, rows: int = ROWS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["callee", "prompt"])
        for n in range(rows):
            writer.writerow([f"+316{20000000 + n:08d}", f"Your parcel {n} arrives today."])
    return path


def campaign(redis_url: str, *args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**worker_env({"broker_url": redis_url}), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.Popen(
        [CMVOICE, "campaign", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )


def store_for(redis_url: str) -> CampaignStore:
    return CampaignStore(Runtime.from_settings(Settings(broker_url=redis_url)))


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_an_interrupted_start_resumes_and_enqueues_every_row_exactly_once(
    redis_url: str, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    # Given a 20,000-row file and a template
    path = big_csv(tmp_path / "calls.csv")
    template = tmp_path / "template.json"
    template.write_text(json.dumps({"caller": CALLER}), encoding="utf-8")
    store = store_for(redis_url)

    # When `campaign start` is stopped mid-file (Ctrl-C, or killed outright)
    start = campaign(
        redis_url,
        "start", str(path), "--kind", "notification", "--template", str(template),
        "--batch-size", "250",
        cwd=tmp_path,
    )  # fmt: skip
    assert start.stdout is not None
    campaign_id = start.stdout.readline().strip()
    wait_for(lambda: store.get(campaign_id).checkpoint_line >= 2000, timeout_s=30)
    start.send_signal(stop_signal)
    _, stderr = start.communicate(timeout=30)
    stopped = store.get(campaign_id)

    # Then it stopped part-way, and said how to go on (Ctrl-C) or left the lock to expire (kill)
    assert 2000 <= stopped.checkpoint_line < ROWS + 1
    if stop_signal is signal.SIGINT:
        assert start.returncode == 130, stderr
        assert f"--resume {campaign_id}" in stderr
        assert stopped.enqueue_state is EnqueueState.INTERRUPTED
    else:
        # A killed start keeps its lock until it expires: no second start runs alongside.
        early = campaign(redis_url, "start", str(path), "--resume", campaign_id, cwd=tmp_path)
        assert "another `campaign start`" in early.communicate(timeout=60)[1]
        store.redis.delete(store.key(campaign_id, "lock"))  # as its 30 s expiry would
        assert store.progress(campaign_id).phase == "interrupted"

    # When it is resumed with the same file
    resumed = campaign(redis_url, "start", str(path), "--resume", campaign_id, cwd=tmp_path)
    out, err = resumed.communicate(timeout=60)

    # Then every row is in the ledger exactly once, with its own line, and queued for dispatch
    assert resumed.returncode == 0, err
    assert out.strip() == campaign_id
    final = store.get(campaign_id)
    assert final.enqueue_state is EnqueueState.COMPLETE
    assert (final.rows_read, final.enqueued, final.invalid) == (ROWS, ROWS, 0)
    lines = [
        int(line or 0)
        for line in (
            store.redis.hget(key, "campaign_line")
            for key in store.redis.scan_iter(Keys().call("*"), count=5000)
        )
    ]
    assert len(lines) == ROWS
    assert sorted(lines) == list(range(2, ROWS + 2))
    assert store.progress(campaign_id).counts == {"QUEUED": ROWS}
    # Every call waits in the campaign's backlog, once; nothing was published in bulk.
    backlog = store.backlog(campaign_id, store.ledger.server_time_ms())
    assert backlog.total == ROWS, "every call waits in the backlog"
    assert redis.Redis.from_url(redis_url).llen("cmvoice.dispatch") == 0


def test_status_report_and_list_speak_to_a_person_without_showing_numbers(
    redis_url: str, tmp_path: Path
) -> None:
    # Given a small campaign started from the command line, with an invalid row
    path = tmp_path / "calls.csv"
    path.write_text("callee,prompt\n+31612345620,Hello.\n0612345678,Hello.\n", encoding="utf-8")
    start = campaign(
        redis_url,
        "start", str(path), "--kind", "notification", "--rate", "2/s",
        "--template", str(write_json(tmp_path / "t.json", {"caller": CALLER})),
        cwd=tmp_path,
    )  # fmt: skip
    out, err = start.communicate(timeout=60)
    assert start.returncode == 0, err
    campaign_id = out.strip()
    assert (tmp_path / f"campaign-{campaign_id}-errors.csv").exists()

    # When its status, list and report are asked for
    status = campaign(redis_url, "status", campaign_id, "--json", cwd=tmp_path).communicate()
    listed = campaign(redis_url, "list", cwd=tmp_path).communicate()
    report_path = tmp_path / "report.csv"
    campaign(redis_url, "report", campaign_id, "--out", str(report_path), cwd=tmp_path).wait()

    # Then they tell the story, with numbers masked
    data = json.loads(status[0])
    assert (data["enqueued"], data["invalid"], data["rate"], data["states"]) == (
        1,
        1,
        "2/s",
        {"QUEUED": 1},
    )
    assert campaign_id in listed[0]
    report = report_path.read_text(encoding="utf-8")
    assert "+31******620" in report
    assert "+31612345620" not in report
    assert "0612345678" not in report


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_a_resume_of_another_file_is_refused(redis_url: str, tmp_path: Path) -> None:
    # Given a campaign of one file
    first = big_csv(tmp_path / "first.csv", rows=3)
    template = write_json(tmp_path / "t.json", {"caller": CALLER, "prompt": "Hi."})
    start = campaign(
        redis_url, "start", str(first), "-k", "notification", "--template", str(template),
        cwd=tmp_path,
    )  # fmt: skip
    campaign_id = start.communicate(timeout=60)[0].strip()

    # When it is resumed with a different file
    other = big_csv(tmp_path / "other.csv", rows=4)
    resumed = campaign(redis_url, "start", str(other), "--resume", campaign_id, cwd=tmp_path)
    _, err = resumed.communicate(timeout=60)

    # Then it is refused, saying why
    assert resumed.returncode == 1
    assert "not the file campaign" in err
    assert os.path.basename(str(first)) in err


@pytest.fixture
def small_campaign(redis_url: str, tmp_path: Path) -> str:
    """A campaign of three rows, started from the command line: one valid, one invalid, one
    duplicate of the first. No worker runs, so its one call stays QUEUED."""
    path = tmp_path / "calls.csv"
    path.write_text(
        "callee,prompt\n+31612345620,Hello.\n0612345678,Hello.\n+31612345620,Again.\n",
        encoding="utf-8",
    )
    template = write_json(tmp_path / "t.json", {"caller": CALLER})
    start = campaign(
        redis_url, "start", str(path), "-k", "notification", "--template", str(template),
        cwd=tmp_path,
    )  # fmt: skip
    out, err = start.communicate(timeout=60)
    assert start.returncode == 0, err
    return out.strip()


def test_a_report_to_standard_output_is_the_csv_alone(
    redis_url: str, tmp_path: Path, small_campaign: str
) -> None:
    # Given a campaign with a valid, an invalid and a duplicate row
    # When its report is written to standard output
    report = campaign(redis_url, "report", small_campaign, "-o", "-", cwd=tmp_path)
    out, err = report.communicate(timeout=60)

    # Then standard output is the CSV, one row per row of the file, and the message is on stderr
    assert report.returncode == 0, err
    rows = list(csv.DictReader(out.splitlines()))
    assert [(row["line"], row["state"]) for row in rows] == [
        ("2", "QUEUED"),
        ("3", "INVALID"),
        ("4", "DUPLICATE"),
    ]
    assert rows[0]["callee"] == "+31******620"
    assert "+31612345620" not in out
    assert "3 rows written to standard output" in err
    assert not list(tmp_path.glob("-*")), "no file named - was written"


def test_list_counts_rows_with_the_words_status_uses(
    redis_url: str, tmp_path: Path, small_campaign: str
) -> None:
    # Given a campaign with one invalid and one duplicate row
    # When the campaigns are listed, and its status is asked for
    listed, _ = campaign(redis_url, "list", cwd=tmp_path).communicate(timeout=60)
    status, _ = campaign(redis_url, "status", small_campaign, cwd=tmp_path).communicate(timeout=60)

    # Then both speak of rows enqueued, invalid and duplicates, never of "rejected"
    header, row = (line.split() for line in listed.splitlines()[:2])
    assert header == ["id", "name", "kind", "status", "enqueued", "invalid", "duplicates"]
    assert row[0] == small_campaign
    assert row[-3:] == ["1", "1", "1"]
    assert "1 enqueued, 1 invalid, 1 duplicates" in status
    assert "rejected" not in listed + status


def test_status_json_gives_counts_as_numbers(
    redis_url: str, tmp_path: Path, small_campaign: str
) -> None:
    # Given a campaign whose one call is queued
    # When its status is asked for as JSON
    out, _ = campaign(redis_url, "status", small_campaign, "--json", cwd=tmp_path).communicate(
        timeout=60
    )
    data = json.loads(out)

    # Then every count is a JSON number a script can add up
    counts = ("rows_read", "enqueued", "invalid", "duplicates", "attempts", "redials", "active")
    assert [data[name] for name in counts] == [3, 1, 1, 1, 1, 0, 1]
    assert data["states"] == {"QUEUED": 1}
    assert isinstance(data["calls_per_minute"], int | float)
