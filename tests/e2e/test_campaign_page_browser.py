"""The campaign page in headless Chromium: served behind an API key, and opened as a file."""

from __future__ import annotations

import hmac
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from cmvoice.reporting.page import render_campaign_page
from cmvoice.reporting.view import CampaignPageView
from cmvoice.serving import ServerThread
from tests.support.api_fixtures import API_KEY as REAL_API_KEY
from tests.support.api_fixtures import ApiClient
from tests.support.browser import Browser
from tests.support.campaign_views import empty_campaign_view, finished_campaign_view
from tests.support.stack import CALLER, Stack
from tests.support.workers import CMVOICE, worker_env

API_KEY = "test-api-key-0123456789"
#: Cookie a browser may carry the API key in instead of the Authorization header.
API_KEY_COOKIE = "cmvoice_api_key"
#: The page's own report of what it drew.
PAGE = "window.cmvoiceCampaignPage"
#: A PNG of the whole page with its charts is far above this; a blank one is far below.
MIN_SCREENSHOT_BYTES = 30_000


def _authorized(request: Request) -> bool:
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
    offered = bearer or request.cookies.get(API_KEY_COOKIE, "")
    return hmac.compare_digest(offered.encode(), API_KEY.encode())


def campaign_page_app(views: dict[str, CampaignPageView]) -> Starlette:
    """What the API's ``GET /campaigns/{id}`` will do, with views from a dict, not Redis."""

    async def campaign_page(request: Request) -> Response:
        if not _authorized(request):
            return PlainTextResponse("401: API key required", status_code=401)
        view = views.get(request.path_params["campaign_id"])
        if view is None:
            return PlainTextResponse("404: no such campaign", status_code=404)
        return HTMLResponse(render_campaign_page(view))

    return Starlette(routes=[Route("/campaigns/{campaign_id}", campaign_page)])


def painted_pixels(browser: Browser, chart: str, rgb: tuple[int, int, int]) -> int:
    """Pixels of a chart's canvas in the colour ``rgb`` (give or take anti-aliasing)."""
    red, green, blue = rgb
    count: int = browser.evaluate(
        f"""(() => {{
            const canvas = {PAGE}.charts.{chart}.ctx.canvas;
            const pixels = canvas.getContext('2d')
                .getImageData(0, 0, canvas.width, canvas.height).data;
            let found = 0;
            for (let i = 0; i < pixels.length; i += 4) {{
                if (Math.abs(pixels[i] - {red}) < 8 && Math.abs(pixels[i + 1] - {green}) < 8
                    && Math.abs(pixels[i + 2] - {blue}) < 8 && pixels[i + 3] > 200) found++;
            }}
            return found;
        }})()"""
    )
    return count


@pytest.fixture
def finished_view() -> CampaignPageView:
    return finished_campaign_view(calls=400, minutes=20, name="Spring <reminders> & more")


@pytest.fixture
def api_server(finished_view: CampaignPageView) -> Iterator[ServerThread]:
    with ServerThread(campaign_page_app({finished_view.campaign_id: finished_view})) as server:
        yield server


def test_a_finished_campaigns_page_draws_every_minute_and_shows_its_counters(
    browser: Browser, api_server: ServerThread, finished_view: CampaignPageView, tmp_path: Path
) -> None:
    # Given the page of a campaign of 400 calls over 20 minutes, behind an API key header
    browser.set_headers({"Authorization": f"Bearer {API_KEY}"})
    url = f"{api_server.url}/campaigns/{finished_view.campaign_id}"

    # When an operator's browser opens it and its scripts have run
    browser.open(url, ready=f"{PAGE}.ready")

    # Then the charts hold a point per minute, every call placed and every outcome by code
    assert browser.evaluate(f"{PAGE}.error") is None
    minutes = browser.evaluate(f"{PAGE}.charts.placed.data[0].length")
    assert 20 <= minutes <= 22
    placed = browser.evaluate(f"{PAGE}.charts.placed.data[1].reduce((a, b) => a + b, 0)")
    assert placed == 400
    labels = browser.evaluate(f"{PAGE}.charts.outcomes.series.slice(1).map(s => s.label)")
    assert labels == ["9 not answered", "10 finished", "11 failed", "12 rejected"]
    ended = browser.evaluate(
        f"{PAGE}.charts.outcomes.data.slice(1).map(ys => ys.reduce((a, b) => a + b, 0))"
    )
    assert dict(zip([9, 10, 11, 12], ended, strict=True)) == finished_view.result_codes
    # ...drawn on the canvas, not only held: the bars cover a good part of the plot
    drawn = browser.evaluate(
        f"""(() => {{
            const canvas = {PAGE}.charts.placed.ctx.canvas;
            const pixels = canvas.getContext('2d')
                .getImageData(0, 0, canvas.width, canvas.height).data;
            let painted = 0;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
            return painted / (canvas.width * canvas.height);
        }})()"""
    )
    assert drawn > 0.2
    # ...the counters and the name read as they should, the name as text
    assert browser.text("#counter-rows-read") == "430"
    assert browser.text("#counter-done") == "400"
    assert browser.text("#counter-invalid") == "18"
    assert browser.text("#progress-percent") == "100%"
    assert browser.text("#campaign-name") == "Spring <reminders> & more"
    assert browser.evaluate("document.querySelectorAll('#errors-table tbody tr').length") == 2
    # ...nothing else was fetched, and no script failed
    assert browser.evaluate("performance.getEntriesByType('resource').length") == 0
    assert browser.console_errors() == []

    # And a screenshot of it all is saved
    shot = browser.screenshot(tmp_path / "campaign-page.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > MIN_SCREENSHOT_BYTES


def test_the_page_needs_the_api_key_and_takes_it_from_a_cookie(
    browser: Browser, api_server: ServerThread, finished_view: CampaignPageView
) -> None:
    # Given the campaign page's URL and a browser without the key
    url = f"{api_server.url}/campaigns/{finished_view.campaign_id}"

    # When it opens the page, it is turned away
    browser.open(url)
    assert browser.text("body") == "401: API key required"

    # When the key is in a cookie for the API's host
    browser.set_cookie(api_server.url, API_KEY_COOKIE, API_KEY)
    browser.open(url, ready=f"{PAGE}.ready")

    # Then the page shows the campaign
    assert browser.text("#campaign-id") == finished_view.campaign_id
    assert browser.evaluate(f"Object.keys({PAGE}.charts).sort()") == ["outcomes", "placed"]


def test_a_saved_page_of_a_campaign_with_no_calls_opens_offline_and_says_so(
    browser: Browser, tmp_path: Path
) -> None:
    # Given the page of a campaign still reading its file, saved as a file (as --html does)
    saved = tmp_path / "campaign.html"
    saved.write_text(render_campaign_page(empty_campaign_view()), encoding="utf-8")

    # When a browser opens the file, with no server anywhere
    browser.open(saved.as_uri(), ready=f"{PAGE}.ready")

    # Then no chart is drawn, each part says there is nothing yet, and no script failed
    assert browser.evaluate(f"{PAGE}.error") is None
    assert browser.evaluate(f"Object.keys({PAGE}.charts).length") == 0
    assert browser.text("#chart-placed-empty") == "No calls placed yet."
    assert browser.text("#chart-outcomes-empty") == "No call has ended yet."
    assert browser.text("#campaign-phase") == "ENQUEUING"
    assert browser.console_errors() == []


def test_a_campaign_run_through_the_stack_shows_on_the_apis_page_after_the_login_form(
    browser: Browser, api: ApiClient, stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given a campaign of six rows, one of them invalid, run to its end through the stack
    calls = tmp_path / "reminders.csv"
    calls.write_text(
        "callee\n" + "".join(f"+316123456{n}\n" for n in (20, 21, 22, 23, 24)) + "0612345678\n",
        encoding="utf-8",
    )
    template = json.dumps({"caller": CALLER, "prompt": "Your appointment is tomorrow."})
    created = api.upload_campaign(calls, kind="notification", template=template, name="Reminders")
    cid = created.json()["campaign_id"]
    api.wait_for_phase(cid, "finished")
    page_url = f"{api.url}/campaigns/{cid}"

    # When an operator's browser opens the page, it gets the login form instead
    browser.open(page_url)
    assert browser.evaluate("document.title") == "Sign in · cmvoice"

    # ...a wrong key shows the form again, saying so
    browser.driver.find_element("id", "key").send_keys("not-the-key-of-this-server")
    browser.driver.find_element("id", "sign-in").click()
    browser.wait_until("document.getElementById('login-error')")
    assert browser.text("#login-error") == "That is not an API key of this server."

    # When the right key is given, then the browser is sent back to the page, which draws
    browser.driver.find_element("id", "key").send_keys(REAL_API_KEY)
    browser.driver.find_element("id", "sign-in").click()
    browser.wait_until(f"{PAGE}.ready")
    assert browser.evaluate("location.href") == page_url
    assert browser.evaluate(f"{PAGE}.error") is None
    placed = browser.evaluate(f"{PAGE}.charts.placed.data[1].reduce((a, b) => a + b, 0)")
    assert placed == 5
    # ...on an axis of minutes around the campaign's one minute, not of years
    span_s = browser.evaluate(
        f"{PAGE}.charts.placed.scales.x.max - {PAGE}.charts.placed.scales.x.min"
    )
    assert 60 <= span_s <= 3 * 60
    labels = browser.evaluate(f"{PAGE}.charts.outcomes.series.slice(1).map(s => s.label)")
    assert labels == ["10 finished"]
    assert browser.evaluate(f"{PAGE}.charts.outcomes.data[1].reduce((a, b) => a + b, 0)") == 5
    # ...each drawn: the outcomes of a one-minute campaign as points of their code's colour
    assert painted_pixels(browser, "outcomes", (0x1F, 0x9D, 0x55)) > 20
    assert browser.text("#campaign-name") == "Reminders"
    assert browser.text("#counter-done") == "5"
    assert browser.text("#counter-invalid") == "1"
    assert browser.evaluate("document.querySelectorAll('#errors-table tbody tr').length") == 1
    # ...the key stays out of the page's reach (HttpOnly cookie), and no script failed (the
    # two 401s are the login form's own answers)
    assert browser.evaluate("document.cookie") == ""
    assert [error for error in browser.console_errors() if "status of 401" not in error] == []
    shot = browser.screenshot(tmp_path / "campaign-page-live.png")
    assert shot.stat().st_size > MIN_SCREENSHOT_BYTES

    # And `campaign report --html` saves the same page, which opens with no server at all
    saved = tmp_path / "reminders.html"
    run = subprocess.run(
        [CMVOICE, "campaign", "report", cid, "--html", str(saved)],
        env=worker_env({"broker_url": stack.redis_url}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    browser.open(saved.as_uri(), ready=f"{PAGE}.ready")
    assert browser.evaluate(f"{PAGE}.charts.placed.data[1].reduce((a, b) => a + b, 0)") == 5
    assert browser.text("#campaign-id") == cid
