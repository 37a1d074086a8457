"""A faithful local simulator of CM's Voice API: instructions in, simulated calls, callbacks out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cmvoice.simulator.config import DEV_PRODUCT_TOKEN, SimulatorConfig
from cmvoice.simulator.faults import Faults
from cmvoice.simulator.scenarios import Outcome, Scenario

if TYPE_CHECKING:
    from cmvoice.simulator.app import create_app

__all__ = [
    "DEV_PRODUCT_TOKEN",
    "Faults",
    "Outcome",
    "Scenario",
    "SimulatorConfig",
    "create_app",
]


def __getattr__(name: str) -> Any:
    # FastAPI loads with the app, not with a constant: the `cmvoice` command reads its option
    # defaults from cmvoice.simulator.config, and every command would pay for FastAPI.
    if name == "create_app":
        from cmvoice.simulator.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
