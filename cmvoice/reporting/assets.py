"""The static files a campaign page inlines: the vendored uPlot, the page's own script and CSS."""

from __future__ import annotations

import functools
import re
from importlib import resources

#: Package whose ``static/`` folder holds the assets (shipped as package data).
ASSET_PACKAGE = "cmvoice.reporting"
#: The vendored chart library, its stylesheet, and the page's own script and stylesheet.
UPLOT_SCRIPT = "uPlot.iife.min.js"
UPLOT_STYLE = "uPlot.min.css"
PAGE_SCRIPT = "campaign_page.js"
PAGE_STYLE = "campaign_page.css"

#: What would end an inline ``<script>``/``<style>`` element early, or start an HTML comment
#: inside one (which changes where the element ends).
_CLOSES_ELEMENT = re.compile(r"</(script|style)|<!--", re.IGNORECASE)
#: ``/*! https://github.com/leeoniya/uPlot (v1.6.32) */``: the banner at the top of uPlot's dist.
_UPLOT_BANNER = re.compile(r"\(v(\d+\.\d+\.\d+)\)")


@functools.cache
def inline_asset(name: str) -> str:
    """The text of ``static/<name>``, checked to be safe inside an inline element.

    Raises ``ValueError`` naming the file if its text could close the element it is put in:
    a new vendored version must not break every page silently.
    """
    text = resources.files(ASSET_PACKAGE).joinpath("static", name).read_text(encoding="utf-8")
    found = _CLOSES_ELEMENT.search(text)
    if found:
        raise ValueError(
            f"static/{name}: contains {found.group(0)!r} at offset {found.start()}, "
            "which would end its inline <script>/<style> element early"
        )
    return text


@functools.cache
def uplot_version() -> str:
    """The vendored uPlot's version, read from its banner (``1.6.32``)."""
    found = _UPLOT_BANNER.search(inline_asset(UPLOT_SCRIPT)[:200])
    if found is None:
        raise ValueError(f"static/{UPLOT_SCRIPT}: no '(vX.Y.Z)' version banner at the top")
    return found.group(1)
