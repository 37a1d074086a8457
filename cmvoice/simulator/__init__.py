"""A faithful local simulator of CM's Voice API: instructions in, simulated calls, callbacks out."""

from cmvoice.simulator.app import create_app
from cmvoice.simulator.config import DEV_PRODUCT_TOKEN, SimulatorConfig
from cmvoice.simulator.faults import Faults
from cmvoice.simulator.scenarios import Outcome, Scenario

__all__ = [
    "DEV_PRODUCT_TOKEN",
    "Faults",
    "Outcome",
    "Scenario",
    "SimulatorConfig",
    "create_app",
]
