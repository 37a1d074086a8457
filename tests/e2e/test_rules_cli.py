"""The calling rules from the command line, as an operator uses them: the suppression list,
a campaign's window and deadline, and a send refused by a rule."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import redis

from cmvoice.keyspace import Keys
from tests.support.stack import CALLER
from tests.support.workers import CMVOICE, worker_env

SUPPRESSED = "+31612345620"


def cli(redis_url: str, *args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {**worker_env({"broker_url": redis_url, **settings}), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [CMVOICE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60, check=False
    )


def test_the_suppression_list_is_kept_from_the_command_line_and_never_shows_a_number(
    redis_url: str, tmp_path: Path
) -> None:
    # Given a number added by hand and two more from an export with a callee column
    assert cli(redis_url, "suppress", "add", SUPPRESSED, cwd=tmp_path).returncode == 0
    export = tmp_path / "opt-outs.csv"
    export.write_text("name,callee\nAnn,+31612345621\nBob,0612345622\nCy,+31612345623\n")
    imported = cli(redis_url, "suppress", "import", str(export), cwd=tmp_path)

    # Then the import reports the national number it cannot take (masked) and adds the rest
    assert imported.returncode == 1
    assert "line 3" in imported.stderr
    assert "0612345622" not in imported.stderr
    assert "2 number(s) added" in imported.stderr

    # And check answers with its exit code, list shows masked numbers only
    assert cli(redis_url, "suppress", "check", SUPPRESSED, cwd=tmp_path).returncode == 0
    assert cli(redis_url, "suppress", "check", "+31612345629", cwd=tmp_path).returncode == 1
    listed = cli(redis_url, "suppress", "list", cwd=tmp_path)
    assert "+31******620" in listed.stdout
    assert "+31******623" in listed.stdout
    assert "612345620" not in listed.stdout
    assert "3 number(s) suppressed" in listed.stderr

    # And Redis holds hashes, not the numbers
    client = redis.Redis.from_url(redis_url)
    assert b"612345620" not in b"".join(client.hkeys(Keys().suppressed()))
    assert b"+31612345620" not in b"".join(client.hvals(Keys().suppressed()))
    client.close()

    # When a call to a suppressed number is sent, then it is refused naming the rule
    sent = cli(
        redis_url, "send", "notification", "--callee", SUPPRESSED, "--caller", CALLER,
        "--prompt", "Hi.", cwd=tmp_path,
    )  # fmt: skip
    assert sent.returncode == 1
    assert "suppressed" in sent.stderr
    assert SUPPRESSED not in sent.stderr

    # And once removed, it is not suppressed any more
    assert cli(redis_url, "suppress", "remove", SUPPRESSED, cwd=tmp_path).returncode == 0
    assert cli(redis_url, "suppress", "check", SUPPRESSED, cwd=tmp_path).returncode == 1


def test_campaign_start_takes_a_window_days_and_a_deadline_and_status_shows_them(
    redis_url: str, tmp_path: Path
) -> None:
    # Given a campaign file, one of whose numbers is in a country not allowed
    path = tmp_path / "calls.csv"
    path.write_text("callee\n+31612345620\n+31612345621\n+32470123456\n", encoding="utf-8")
    template = tmp_path / "template.json"
    template.write_text(json.dumps({"caller": CALLER, "prompt": "Hi."}), encoding="utf-8")

    # When it is started with a window, days and a deadline
    started = cli(
        redis_url, "campaign", "start", str(path), "--kind", "notification",
        "--template", str(template), "--window", "9:00-20:00", "--days", "mon-fri",
        "--valid-for", "8h", cwd=tmp_path, allowed_countries="NL",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    campaign_id = started.stdout.strip()

    # Then its status says them back, canonical
    status = json.loads(
        cli(redis_url, "campaign", "status", campaign_id, "--json", cwd=tmp_path).stdout
    )
    assert (status["window"], status["days"]) == ("09:00-20:00", "mon-fri")
    assert status["until"]
    assert status["backlog"] == 2
    assert status["refused_by_rule"] == {"country": 1}
    # and so does the table a person reads
    table = cli(redis_url, "campaign", "status", campaign_id, cwd=tmp_path).stdout
    rows = [" ".join(line.split()) for line in table.splitlines()]
    assert "calling window 09:00-20:00 mon-fri, callee-local" in rows
    assert f"deadline {status['until']} (0 expired)" in rows
    assert "refused by rule country 1" in rows

    # And a window, a deadline or both deadlines that make no sense are refused, naming them
    for bad, said in (
        (["--window", "25:00-26:00"], "calling window"),
        (["--until", "2026-12-24T18:00"], "time zone"),
        (["--until", "2030-01-01T00:00Z", "--valid-for", "8h"], "not both"),
    ):
        refused = cli(
            redis_url, "campaign", "start", str(path), "--kind", "notification",
            "--template", str(template), *bad, cwd=tmp_path,
        )  # fmt: skip
        assert refused.returncode != 0, bad
        assert said in refused.stderr, (bad, refused.stderr)
