"""A faithful local simulator of CM's Voice API: instructions in, simulated calls, callbacks out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cmvoice.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from cmvoice.simulator.app import create_app
    from cmvoice.simulator.config import DEV_PRODUCT_TOKEN, SimulatorConfig
    from cmvoice.simulator.faults import Faults
    from cmvoice.simulator.scenarios import Outcome, Scenario
else:
    # Imported on first use: the `cmvoice` command reads the simulator's defaults (its port)
    # without paying for FastAPI.
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "cmvoice.simulator.app": ["create_app"],
            "cmvoice.simulator.config": ["DEV_PRODUCT_TOKEN", "SimulatorConfig"],
            "cmvoice.simulator.faults": ["Faults"],
            "cmvoice.simulator.scenarios": ["Outcome", "Scenario"],
        },
    )

__all__ = [
    "DEV_PRODUCT_TOKEN",
    "Faults",
    "Outcome",
    "Scenario",
    "SimulatorConfig",
    "create_app",
]
