"""Headless Chromium for tests: load a page, wait for its scripts, evaluate JavaScript, screenshot.

Driven by Selenium through Debian's chromedriver, which is built from the same source as
Debian's chromium, so the two always match. Selenium is only the transport here: headers and
cookies go through Chromium's DevTools protocol (``execute_cdp_cmd``), which works before the
first page is loaded and for any URL. No network: Selenium Manager is never asked for a
driver, and Chromium's own background traffic is switched off by its flags.

Usage, in a test::

    def test_page(browser: Browser, tmp_path: Path) -> None:
        browser.set_headers({"Authorization": "Bearer secret"})
        browser.open(url, ready="window.cmvoiceCampaignPage.ready")
        assert browser.evaluate("document.title") == "..."
        browser.screenshot(tmp_path / "page.png")
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: Where Chromium and its driver are looked for (``$PATH`` first, by these names).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER_NAMES = ("chromedriver",)
#: Environment variables that point at a Chromium and a chromedriver elsewhere.
CHROMIUM_ENV = "CMVOICE_TEST_CHROMIUM"
CHROMEDRIVER_ENV = "CMVOICE_TEST_CHROMEDRIVER"
#: What the skip reason tells a developer to run.
INSTALL_HINT = "apt-get install chromium chromium-driver"
#: Headless, and nothing that reaches out: without the background-networking flags Chromium
#: keeps trying hosts that a closed network refuses. ``--user-data-dir`` is added per browser.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
)
#: Window size: wide enough for the pages' desktop layout, the same in every screenshot.
DEFAULT_WINDOW = (1280, 900)
#: Longest wait for a page to load or for a ``ready`` expression.
DEFAULT_TIMEOUT_S = 15.0


def find_chromium() -> tuple[str, str] | str:
    """``(chromium, chromedriver)`` paths, or why they cannot be used (a skip reason)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed: pip install -e '.[dev]'"
    chromium = os.environ.get(CHROMIUM_ENV) or _which(CHROMIUM_NAMES)
    driver = os.environ.get(CHROMEDRIVER_ENV) or _which(CHROMEDRIVER_NAMES)
    if chromium is None:
        return f"chromium not installed: {INSTALL_HINT}"
    if driver is None:
        return f"chromedriver not installed: {INSTALL_HINT}"
    return chromium, driver


def _which(names: tuple[str, ...]) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


class Browser:
    """One headless Chromium with a profile of its own, driven by chromedriver."""

    def __init__(self, chromium: str, chromedriver: str, profile_dir: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile_dir}")
        options.add_argument(f"--window-size={DEFAULT_WINDOW[0]},{DEFAULT_WINDOW[1]}")
        # Console messages (errors of the page's scripts among them) for console_errors().
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # An explicit driver path: Selenium Manager, which would download one, is not used.
        self._driver = webdriver.Chrome(options=options, service=Service(chromedriver))
        self._driver.set_page_load_timeout(DEFAULT_TIMEOUT_S)
        self._driver.execute_cdp_cmd("Network.enable", {})
        self._console: list[dict[str, Any]] = []

    @property
    def driver(self) -> Any:
        """The Selenium WebDriver, for what this class does not wrap."""
        return self._driver

    def set_headers(self, headers: dict[str, str]) -> None:
        """Send ``headers`` with every request from now on (``{}`` stops sending them)."""
        self._driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})

    def set_basic_auth(self, user: str, password: str) -> None:
        """HTTP basic auth (as Flower asks for) on every request, without a login prompt."""
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self.set_headers({"Authorization": f"Basic {token}"})

    def set_cookie(self, url: str, name: str, value: str) -> None:
        """A cookie for ``url``'s host, set before (or after) any page of it is loaded."""
        reply = self._driver.execute_cdp_cmd(
            "Network.setCookie", {"url": url, "name": name, "value": value}
        )
        if reply.get("success") is False:
            raise AssertionError(f"Chromium refused cookie {name!r} for {url}")

    def open(
        self, url: str, *, ready: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        """Load ``url`` (http:// or file://) and wait until it has loaded and ``ready`` is truthy.

        Loading waits for the ``load`` event, so inline scripts have run; ``ready`` is a
        JavaScript expression for whatever the page does later.
        """
        self._driver.get(url)
        self.wait_until("document.readyState === 'complete'", timeout_s=timeout_s)
        if ready is not None:
            self.wait_until(ready, timeout_s=timeout_s)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-like: dicts, lists, numbers)."""
        return self._driver.execute_script(f"return ({expression});")

    def wait_until(self, expression: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
        """Poll ``expression`` until it is truthy and return it; fail with the page's errors."""
        deadline = time.monotonic() + timeout_s
        while True:
            # Not there yet (e.g. the page's global not defined) counts as falsy, not an error.
            guarded = f"(() => {{ try {{ return {expression}; }} catch (e) {{ return null; }} }})()"
            value = self.evaluate(guarded)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{expression!r} still falsy after {timeout_s} s on "
                    f"{self._driver.current_url}; console errors: {self.console_errors()}"
                )
            time.sleep(0.05)

    def text(self, css_selector: str) -> str:
        """The visible text of the first element matching ``css_selector``."""
        from selenium.webdriver.common.by import By

        text: str = self._driver.find_element(By.CSS_SELECTOR, css_selector).text
        return text

    def console_messages(self) -> list[dict[str, Any]]:
        """Every console message so far: ``{"level": "SEVERE", "message": ...}``."""
        self._console.extend(self._driver.get_log("browser"))
        return list(self._console)

    def console_errors(self) -> list[str]:
        """Console errors so far: uncaught exceptions, failed loads."""
        return [m["message"] for m in self.console_messages() if m.get("level") == "SEVERE"]

    def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        """Save a PNG of the page (all of it, not only the window, when ``full_page``)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self._driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": size["height"],
                "scale": 1,
            }
        reply = self._driver.execute_cdp_cmd("Page.captureScreenshot", params)
        path.write_bytes(base64.b64decode(reply["data"]))
        return path

    def close(self) -> None:
        self._driver.quit()


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A fresh headless Chromium (new profile: no cookies, no cache); skips when there is none."""
    found = find_chromium()
    if isinstance(found, str):
        pytest.skip(found)
    chromium, chromedriver = found
    with tempfile.TemporaryDirectory(prefix="cmvoice-chromium-") as profile:
        opened = Browser(chromium, chromedriver, Path(profile))
        try:
            yield opened
        finally:
            opened.close()
