"""The campaign page's HTML without a browser: escaped user text, nothing external, its data."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from datetime import timedelta
from importlib import resources
from typing import Any

import pytest

from cmvoice.reporting.assets import UPLOT_SCRIPT, inline_asset, uplot_version
from cmvoice.reporting.chart_data import chart_data, script_json
from cmvoice.reporting.page import format_duration, render_campaign_page
from tests.support.campaign_views import STARTED_AT, empty_campaign_view, finished_campaign_view

_DATA_BLOCK = re.compile(
    r'<script type="application/json" id="campaign-data">(.*?)</script>', re.DOTALL
)
#: Anything that makes a browser fetch: src/href/action attributes, CSS url() and @import.
_FETCHES = re.compile(
    r"""(?:\b(?:src|href|action|poster|srcset)\s*=\s*["']?|url\(\s*["']?|@import\s+["']?)"""
    r"""([^"')\s>]*)""",
    re.IGNORECASE,
)


def embedded_data(page: str) -> dict[str, Any]:
    found = _DATA_BLOCK.search(page)
    assert found, "no campaign-data block in the page"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def counter(page: str, key: str) -> str:
    found = re.search(rf'<dd id="counter-{key}">([^<]*)</dd>', page)
    assert found, f"no counter {key}"
    return found.group(1)


def test_a_script_tag_in_the_campaign_name_is_shown_as_text() -> None:
    # Given a campaign named by someone's file with markup in it
    view = finished_campaign_view(name='<script>alert("owned")</script> & co')

    # When its page is rendered
    page = render_campaign_page(view)

    # Then the name is escaped text, and the only script elements are the page's own three
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt; &amp; co" in page
    assert 'alert("owned")' not in page
    assert page.count("<script") == 3


def test_markup_in_error_rules_cannot_close_an_element() -> None:
    # Given rules whose text would end the page's table or script if pasted raw
    view = dataclasses.replace(
        finished_campaign_view(),
        errors_by_rule={"name: </script><img src=x onerror=alert(1)>": 2, "a\"b'c": 1},
    )

    # When its page is rendered
    page = render_campaign_page(view)

    # Then both rules are shown as escaped text, in a row of their own, largest first
    assert (
        '<td class="rule">name: &lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;</td>'
        '<td class="num">2</td>'
    ) in page
    assert '<td class="rule">a&quot;b&#x27;c</td><td class="num">1</td>' in page
    assert "<img" not in page


def test_the_page_fetches_nothing_from_any_host() -> None:
    # Given the page of a finished campaign
    page = render_campaign_page(finished_campaign_view())

    # When every URL the browser would load from it is collected
    fetched = [url for url in _FETCHES.findall(page) if url]

    # Then there is none but the inline empty icon: no CDN, no web font, no other host
    assert fetched == ["data:,"]
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page, re.IGNORECASE)
    assert "fonts.googleapis" not in page


def test_the_page_inlines_the_vendored_chart_library_and_names_its_version() -> None:
    # Given the page of a finished campaign
    page = render_campaign_page(finished_campaign_view())

    # Then uPlot's code is in it, and the footer says which uPlot drew the charts
    assert inline_asset(UPLOT_SCRIPT) in page
    assert f"uPlot {uplot_version()} (MIT license)" in page


def test_the_vendored_files_are_the_version_and_bytes_vendored_txt_names() -> None:
    # Given the record of what was vendored
    static = resources.files("cmvoice.reporting").joinpath("static")
    record = static.joinpath("VENDORED.txt").read_text(encoding="utf-8")

    # Then its version is the one in uPlot's banner, and each file has its recorded checksum
    assert record.startswith(f"uPlot {uplot_version()}:")
    for name, digest in re.findall(r"^\s+(\S+)\s+=.*sha256 ([0-9a-f]{64})$", record, re.M):
        assert hashlib.sha256(static.joinpath(name).read_bytes()).hexdigest() == digest, name
    assert (
        static.joinpath("uPlot.LICENSE").read_text(encoding="utf-8").startswith("The MIT License")
    )


def test_the_counters_show_the_campaigns_numbers() -> None:
    # Given a finished campaign of 400 calls from 430 rows
    view = finished_campaign_view(calls=400)

    # When its page is rendered
    page = render_campaign_page(view)

    # Then each counter shows its number, and the bar says all calls settled
    assert counter(page, "rows-read") == "430"
    assert counter(page, "enqueued") == "400"
    assert counter(page, "invalid") == "18"
    assert counter(page, "duplicates") == "12"
    assert counter(page, "done") == "400"
    assert counter(page, "backlog") == "0"
    assert '<strong id="progress-percent">100%</strong> of 400 calls settled' in page


def test_a_running_campaign_shows_its_share_settled_and_time_left() -> None:
    # Given a campaign with 1,234 of 5,000 calls settled and about 42 minutes to go
    view = dataclasses.replace(
        finished_campaign_view(),
        phase="running",
        enqueued=5000,
        done=1200,
        expired=34,
        in_flight=66,
        backlog=3700,
        eta_s=2530.0,
    )

    # When its page is rendered
    page = render_campaign_page(view)

    # Then it shows 24 % (rounded down, never 100 % early), the time left and big numbers grouped
    assert '<strong id="progress-percent">24%</strong> of 5,000 calls settled' in page
    assert '<span id="progress-eta">about 42 min 10 s left</span>' in page
    assert counter(page, "backlog") == "3,700"
    assert 'class="phase phase-running"' in page


def test_the_chart_data_holds_every_minutes_calls_and_outcomes() -> None:
    # Given a campaign of 400 calls over 20 minutes, each ending up to 2 minutes later
    view = finished_campaign_view(calls=400, minutes=20)

    # When its page's chart data is read back from the page
    data = embedded_data(render_campaign_page(view))

    # Then there is a point per minute, the calls placed add up, and so does each code's series
    start = int(STARTED_AT.timestamp())
    assert data["x"][0] == start
    assert data["x"] == list(range(start, data["x"][-1] + 60, 60))
    assert 20 <= len(data["x"]) <= 22
    assert sum(data["placed"]) == 400
    by_code = {series["code"]: sum(series["y"]) for series in data["outcomes"]}
    assert by_code == view.result_codes
    labels = [series["label"] for series in data["outcomes"]]
    assert labels == ["9 not answered", "10 finished", "11 failed", "12 rejected"]


def test_minutes_without_calls_are_drawn_as_zero() -> None:
    # Given calls at 09:00 and 09:03 only, one of them with an unusual result code
    view = dataclasses.replace(
        empty_campaign_view(),
        placed_per_minute=[(STARTED_AT, 5), (STARTED_AT + timedelta(minutes=3), 2)],
        outcomes_per_minute=[(STARTED_AT + timedelta(minutes=3), {17: 1})],
    )

    # When the chart data is made
    data = chart_data(view)

    # Then 09:01 and 09:02 are there with nothing, and code 17 has a label and a colour
    assert data["placed"] == [5, 0, 0, 2]
    assert data["outcomes"] == [
        {"code": 17, "label": "code 17", "color": data["outcomes"][0]["color"], "y": [0, 0, 0, 1]}
    ]
    assert re.fullmatch(r"#[0-9a-f]{6}", data["outcomes"][0]["color"])


@pytest.mark.parametrize("text", ["</script><script>alert(1)</script>", "<!--", "a & b > c"])
def test_chart_json_cannot_end_its_script_element(text: str) -> None:
    # Given data holding text that would end or change a script element if written raw
    # When it is written as script JSON
    written = script_json({"label": text})

    # Then no "<", ">" or "&" is left in it, and it still reads back as the same text
    assert not re.search("[<>&]", written)
    assert json.loads(written) == {"label": text}


def test_a_campaign_with_no_calls_yet_says_so_everywhere() -> None:
    # Given a campaign still reading its file
    page = render_campaign_page(empty_campaign_view())

    # Then each part says what it would show once there is something, and no chart is drawn
    assert "No calls enqueued yet." in page
    assert '<p class="empty" id="chart-placed-empty">No calls placed yet.</p>' in page
    assert '<p class="empty" id="chart-outcomes-empty">No call has ended yet.</p>' in page
    assert '<p class="empty" id="errors-empty">No row rejected so far.</p>' in page
    assert 'id="chart-placed"' not in page
    assert embedded_data(page) == {
        "x": [],
        "placed": [],
        "placed_color": chart_data(empty_campaign_view())["placed_color"],
        "outcomes": [],
    }
    assert counter(page, "done") == "0"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0 s"), (44.6, "45 s"), (60, "1 min"), (200, "3 min 20 s"), (7500, "2 h 05 min")],
)
def test_durations_read_as_a_person_plans(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown
