"""The HTTP API (``cmvoice api``): calls and campaigns for web apps in any language."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cmvoice.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from cmvoice.api.app import DEFAULT_API_PORT, create_app
else:
    __getattr__, __dir__ = lazy_exports(
        __name__, {"cmvoice.api.app": ["DEFAULT_API_PORT", "create_app"]}
    )

__all__ = ["DEFAULT_API_PORT", "create_app"]
